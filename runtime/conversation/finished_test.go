package conversation_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
)

// claimCounter counts the claims a log takes.
type claimCounter struct {
	eventlog.Log
	mu     sync.Mutex
	claims int
}

func (l *claimCounter) Claim(ctx context.Context, key eventlog.Key, epoch int64) (eventlog.Bounds, error) {
	l.mu.Lock()
	l.claims++
	l.mu.Unlock()
	return l.Log.Claim(ctx, key, epoch)
}

func (l *claimCounter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.claims
}

// TestAFinishedConversationIsOpenedNotClaimed: an owner opening a
// conversation its status has finished reads the history, serves it, and
// writes nothing (no claim, no status); one whose status says finished but
// whose log does not is claimed and published as any other.
func TestAFinishedConversationIsOpenedNotClaimed(t *testing.T) {
	finishes := conversation.HandlerFunc(func(ctx context.Context, tn *conversation.Turn) error {
		if err := tn.Send(ctx, "done"); err != nil {
			return err
		}
		return conversation.ErrFinish
	})
	log := &claimCounter{Log: memory.New()}
	key := eventlogtest.NewKey("finished")
	c, _ := start(t, log, key, 1, finishes)
	submit(t, c, message("m-1", "hello"))
	waitFor(t, "the conversation to finish", func() bool {
		ts := types(t, log, key)
		return len(ts) > 0 && ts[len(ts)-1] == protocol.EventFinished
	})
	c.Stop(nil, protocol.CloseGoingAway)
	before, err := log.Bounds(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}

	claims := log.count()
	again, st := start(t, log, key, 1, finishes, func(cfg *conversation.Config) { cfg.Finished = true })
	if n := log.count() - claims; n != 0 {
		t.Errorf("opening a finished conversation claimed its log %d times", n)
	}
	if len(st.list) != 0 {
		t.Errorf("opening a finished conversation wrote its status: %+v", st.list)
	}
	if after, err := log.Bounds(context.Background(), key); err != nil || after != before {
		t.Errorf("the log changed: %+v, then %+v (%v)", before, after, err)
	}
	sub, err := again.Subscribe(context.Background(), protocol.Cursor{After: 0})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range replayed(t, sub) {
		if f.Type == protocol.TypeEvent {
			got = append(got, f.Event)
		}
	}
	if want := "[user_message assistant_message finished]"; fmt.Sprint(got) != want {
		t.Errorf("history served %v, want %s", got, want)
	}
	if _, err := again.Submit(context.Background(), message("m-2", "more")); !isCode(err, protocol.CodeFinished) {
		t.Errorf("a message to a finished conversation: %v, want %s", err, protocol.CodeFinished)
	}
	again.Stop(nil, protocol.CloseGoingAway)

	// A status that says finished where the log does not: claimed as usual.
	live := eventlogtest.NewKey("not-finished")
	first, _ := start(t, log, live, 1, approval)
	submit(t, first, message("m-1", "refund 1"))
	first.Stop(nil, protocol.CloseGoingAway)
	claims = log.count()
	_, st = start(t, log, live, 2, approval, func(cfg *conversation.Config) { cfg.Finished = true })
	if n := log.count() - claims; n != 1 {
		t.Errorf("a conversation whose log goes on was claimed %d times, want 1", n)
	}
	waitFor(t, "its status", func() bool { return st.last().Phase != "" })
}
