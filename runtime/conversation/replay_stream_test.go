package conversation_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
)

// bigReplies answers every message with 40 KiB of text.
type bigReplies struct{}

func (bigReplies) HandleTurn(ctx context.Context, t *conversation.Turn) error {
	return t.Send(ctx, strings.Repeat("x", 40<<10))
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestReplaysAreBoundedInMemory is the attack of a subject who fills a log
// with large events and opens many sockets at after=0 with clients that do
// not read: the replays hold at most the host's budget, however many
// sockets ask, sockets beyond the conversation's cap are refused, and once
// the clients read, each sees every event once and in order, the live ones
// after its replay.
func TestReplaysAreBoundedInMemory(t *testing.T) {
	const sockets, budget = 32, 2 * conversation.ReplayPageBytes
	log := memory.New()
	key := eventlogtest.NewKey("hoarded")
	c, _ := start(t, log, key, 1, bigReplies{}, func(cfg *conversation.Config) {
		cfg.MaxQueued, cfg.MaxSubscribers, cfg.ReplayBudget = 200, sockets, conversation.NewReplayBudget(budget)
	})
	const turns = 100
	for i := range turns {
		submit(t, c, message(fmt.Sprintf("m-%d", i), "fill the log"))
	}
	var history int
	waitFor(t, "every turn answered", func() bool {
		all := types(t, log, key)
		history = len(all)
		return strings.Count(strings.Join(all, " "), protocol.EventAssistantMessage) == turns && all[len(all)-1] == protocol.EventTurnFinished
	})
	before := heapInUse()

	// 32 sockets at after=0 whose clients do not read.
	release := make(chan struct{})
	var stalled atomic.Int64
	seen := make([][]int64, sockets)
	subs := make([]*conversation.Subscription, sockets)
	var wg sync.WaitGroup
	for i := range sockets {
		wg.Go(func() {
			sub, err := c.Subscribe(context.Background(), protocol.Cursor{After: 0})
			if err != nil {
				t.Errorf("socket %d: %v", i, err)
				return
			}
			subs[i] = sub
			first := true
			if err := sub.Replay(context.Background(), func(f protocol.ServerFrame) error {
				// The client stops reading where the large events begin.
				if first && f.Event == protocol.EventAssistantMessage {
					first = false
					stalled.Add(1)
					<-release
				}
				if f.Type == protocol.TypeEvent {
					seen[i] = append(seen[i], f.Seq)
				}
				return nil
			}); err != nil {
				t.Errorf("socket %d replay: %v", i, err)
			}
		})
	}
	waitFor(t, "the budget's pages handed out", func() bool { return stalled.Load() == min(sockets, budget/conversation.ReplayPageBytes) })
	during := heapInUse()
	if _, err := c.Subscribe(context.Background(), protocol.Cursor{After: 0}); !errors.Is(err, conversation.ErrTooManySubscribers) {
		t.Fatalf("socket %d: %v, want refused as one too many", sockets+1, err)
	}
	// A live message while every replay is stalled.
	submit(t, c, message("live", "after the replays began"))
	waitFor(t, "the live turn", func() bool {
		all := types(t, log, key)
		return len(all) > history && all[len(all)-1] == protocol.EventTurnFinished
	})
	grew := int64(during) - int64(before)
	t.Logf("history %d events (%d KiB of replies); heap in use %d KiB before, %d KiB with %d stalled replays (+%d KiB; the budget is %d KiB; whole replays would hold %d KiB)",
		history, turns*40, before>>10, during>>10, sockets, grew>>10, budget>>10, sockets*turns*48)
	if grew > 3*budget {
		t.Errorf("stalled replays grew the heap by %d KiB, over 3× the budget of %d KiB", grew>>10, budget>>10)
	}
	close(release)
	wg.Wait()
	live := len(types(t, log, key)) - history
	for i, sub := range subs {
		if sub == nil {
			continue
		}
		got := seen[i]
		for len(got) < history+live {
			f, ok := <-sub.C
			if !ok {
				t.Fatalf("socket %d closed (%d %s) after %d events", i, sub.Code, sub.Reason, len(got))
			}
			if f.Type == protocol.TypeEvent {
				got = append(got, f.Seq)
			}
		}
		for j, seq := range got {
			if seq != int64(j+1) {
				t.Fatalf("socket %d: event %d has seq %d: not every event once and in order", i, j, seq)
			}
		}
		sub.Close()
	}
}
