package conversation_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
)

// askedLog counts what a bind asks the store, and can make a trim's
// outcome unknown: applied, then reported failed.
type askedLog struct {
	eventlog.Log
	bounds, reads atomic.Int64
	trimLost      atomic.Bool
}

func (l *askedLog) Bounds(ctx context.Context, k eventlog.Key) (eventlog.Bounds, error) {
	l.bounds.Add(1)
	return l.Log.Bounds(ctx, k)
}

func (l *askedLog) Read(ctx context.Context, k eventlog.Key, after int64, limit int) ([]eventlog.Event, error) {
	l.reads.Add(1)
	return l.Log.Read(ctx, k, after, limit)
}

func (l *askedLog) Trim(ctx context.Context, k eventlog.Key, epoch int64, keep int) error {
	err := l.Log.Trim(ctx, k, epoch, keep)
	if err == nil && l.trimLost.Load() {
		return errors.New("the store's answer was lost")
	}
	return err
}

func replayComplete(t *testing.T, frames []protocol.ServerFrame) protocol.ServerFrame {
	t.Helper()
	for _, f := range frames {
		if f.Type == protocol.TypeReplayComplete {
			return f
		}
	}
	t.Fatalf("no replay_complete in %v", frames)
	return protocol.ServerFrame{}
}

// TestABindAsksTheStoreOnlyForWhatTheClientMissed: the owner knows where
// its history begins and which it is, so binding a socket (a moved client,
// a reconnect) costs the store nothing when the client has every event, and
// only the reads of what it missed otherwise: on a loaded API server each
// request is time the client waits, and it was made under the
// conversation's lock.
func TestABindAsksTheStoreOnlyForWhatTheClientMissed(t *testing.T) {
	log := &askedLog{Log: memory.New()}
	key := eventlogtest.NewKey("bind")
	c, st := start(t, log, key, 1, approval)
	submit(t, c, message("m-1", "refund 1234"))
	waitFor(t, "AwaitingInput", awaiting(st))
	b, err := log.Log.Bounds(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		after        int64
		bounds, read int64
	}{{b.LastSeq, 0, 0}, {0, 0, 1}} {
		t.Run(fmt.Sprintf("after %d", tc.after), func(t *testing.T) {
			boundsBefore, readsBefore := log.bounds.Load(), log.reads.Load()
			sub, err := c.Subscribe(context.Background(), protocol.Cursor{After: tc.after, Log: b.LogID})
			if err != nil {
				t.Fatal(err)
			}
			frames := replayed(t, sub)
			if got := replayComplete(t, frames); got.Complete == nil || !*got.Complete || got.FirstSeq != 1 || got.LastSeq != b.LastSeq || got.Log != b.LogID {
				t.Fatalf("replay_complete %+v, want a complete history 1..%d of %s", got, b.LastSeq, b.LogID)
			}
			if n, r := log.bounds.Load()-boundsBefore, log.reads.Load()-readsBefore; n != tc.bounds || r != tc.read {
				t.Fatalf("the bind asked the store for its bounds %d times and read it %d times, want %d and %d", n, r, tc.bounds, tc.read)
			}
		})
	}
}

// TestABindAfterATrimOfUnknownOutcomeAsksTheStore: the owner's trim was
// applied but its answer lost, so the owner cannot know where its history
// now begins: the next bind asks the store, and a client that asks for the
// history from the start is told it is incomplete, from where it begins.
func TestABindAfterATrimOfUnknownOutcomeAsksTheStore(t *testing.T) {
	log := &askedLog{Log: memory.New()}
	log.trimLost.Store(true)
	key := eventlogtest.NewKey("trim-lost")
	echo := conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error { return t.Send(ctx, t.Input) })
	c, _ := start(t, log, key, 1, echo, func(cfg *conversation.Config) { cfg.Retention = 10 })
	for i := range 6 {
		submit(t, c, message(fmt.Sprintf("m-%d", i), "hello"))
		waitFor(t, "the turn", func() bool {
			b, _ := log.Log.Bounds(context.Background(), key)
			return b.LastSeq == int64(3*(i+1))
		})
	}
	b, err := log.Log.Bounds(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if b.FirstSeq == 1 {
		t.Fatalf("the log was not trimmed: %+v", b)
	}
	before := log.bounds.Load()
	sub, err := c.Subscribe(context.Background(), protocol.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	got := replayComplete(t, replayed(t, sub))
	if got.Complete == nil || *got.Complete || got.FirstSeq != b.FirstSeq {
		t.Fatalf("replay_complete %+v, want an incomplete history from %d", got, b.FirstSeq)
	}
	if log.bounds.Load() == before {
		t.Fatal("the bind did not ask the store where the history begins")
	}
}
