package conversation_test

import (
	"context"
	"fmt"
	"testing"

	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
)

// TestANewOwnerRestoresFromTheLastSnapshot: an owner snapshots the
// conversation's state every few events at turn boundaries; the next owner
// reads only the events after the newest snapshot, and knows what the
// whole history says: a message sent again long ago is acknowledged again
// with its seq, not applied twice.
func TestANewOwnerRestoresFromTheLastSnapshot(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("snapshots")
	every := func(c *conversation.Config) { c.SnapshotEvery = 9 }
	echo := conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error { return t.Send(ctx, t.Input) })
	c, _ := start(t, log, key, 1, echo, every)
	first := submit(t, c, message("m-0", "the first"))
	for i := 1; i <= 20; i++ {
		submit(t, c, message(fmt.Sprintf("m-%d", i), "hello"))
		waitFor(t, "the turn's end", func() bool {
			kinds := types(t, log, key)
			return len(kinds) == 3*(i+1) && kinds[len(kinds)-1] == protocol.EventTurnFinished
		})
	}
	c.Stop(nil, protocol.CloseGoingAway)
	<-c.Done()

	next, _ := start(t, log, key, 2, echo, every)
	times := next.StartTimes()
	if times.SnapshotSeq == 0 || times.Events >= 63-9 || int64(times.Events) != 63-times.SnapshotSeq {
		t.Fatalf("the new owner restored from a snapshot after %d and read %d events; want a recent snapshot and only the events after it", times.SnapshotSeq, times.Events)
	}
	again := submit(t, next, message("m-0", "the first"))
	if !again.Duplicate || again.Seq != first.Seq {
		t.Fatalf("the first message sent again: %+v, want a duplicate ack at seq %d", again, first.Seq)
	}
	b, err := log.Bounds(context.Background(), key)
	if err != nil || b.LastSeq != 63 {
		t.Fatalf("the log after the message sent again: %+v, %v; want 63 events", b, err)
	}
}
