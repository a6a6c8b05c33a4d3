package conversation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/runtime/conversation"
)

func parked(st *statuses) func() bool { return func() bool { return st.last().Parked } }

func drain(t *testing.T, c *conversation.Conversation, on bool) {
	t.Helper()
	if err := c.Drain(context.Background(), on); err != nil {
		t.Fatal(err)
	}
}

// A drained conversation parks only once its running turn is over, starts
// no turn while parked yet acknowledges the messages, and the next owner
// runs them: nothing is cut short, nothing lost.
func TestADrainParksAtTheEndOfTheRunningTurn(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("drain-running")
	h := &blocking{release: make(chan struct{})}
	a, stA := start(t, log, key, 1, h)
	submit(t, a, message("m-1", "first"))
	waitFor(t, "the first turn", func() bool { return len(h.seen()) == 1 })

	drain(t, a, true)
	if stA.last().Parked {
		t.Fatal("parked while a turn runs")
	}
	submit(t, a, message("m-2", "second")) // queued behind the running turn
	h.release <- struct{}{}
	waitFor(t, "parked once the turn is over", parked(stA))
	if ack := submit(t, a, message("m-3", "third")); ack.Duplicate {
		t.Fatalf("a message to a parked conversation: %+v", ack)
	}
	// Parked: the queued turns do not start here.
	await.Stays(t, 200*time.Millisecond, "no turn started while parked", func() bool { return len(h.seen()) == 1 })
	want := "[user_message user_message assistant_message turn_finished user_message]"
	if got := fmt.Sprint(types(t, log, key)); got != want {
		t.Fatalf("log %s, want %s", got, want)
	}

	// The next owner runs what was queued, each once.
	close(h.release)
	_, stB := start(t, log, key, 2, h)
	waitFor(t, "B running both queued turns", func() bool { return len(types(t, log, key)) == 9 })
	if got := fmt.Sprint(h.seen()); got != "[first second third]" {
		t.Fatalf("turns run %s", got)
	}
	if stB.last().Parked {
		t.Fatal("the next owner is not drained")
	}
	select {
	case <-a.Done():
	case <-time.After(time.Second):
		// A learns of B at its next write; it has none to make. Fenced
		// either way: its next append fails.
		if _, err := a.Submit(context.Background(), message("m-4", "late")); err == nil {
			t.Fatal("the old owner took a message after the move")
		}
	}
}

// A conversation waiting on a human is at a boundary: it parks at once,
// and the answer it then takes is recorded and acknowledged but handed to
// the turn by the next owner, in replay, once.
func TestADrainParksAWaitingTurnAndTheNextOwnerTakesTheAnswer(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("drain-waiting")
	a, stA := start(t, log, key, 1, approval)
	submit(t, a, message("m-1", "refund 1234"))
	waitFor(t, "AwaitingInput", awaiting(stA))

	drain(t, a, true)
	waitFor(t, "parked while waiting on the human", parked(stA))
	submit(t, a, answer("a-1", "approve-1", "approve"))
	want := "[user_message assistant_message prompt answer]"
	await.Stays(t, 200*time.Millisecond, "the withheld answer not moving the turn on", func() bool {
		return fmt.Sprint(types(t, log, key)) == want
	})
	if s := stA.last(); !s.Parked || s.Prompt != nil {
		t.Fatalf("after the answer: %+v, want parked with no prompt pending", s)
	}

	start(t, log, key, 2, approval)
	waitFor(t, "B finishing the turn", func() bool { return len(types(t, log, key)) == 6 })
	want = "[user_message assistant_message prompt answer assistant_message turn_finished]"
	if got := fmt.Sprint(types(t, log, key)); got != want {
		t.Fatalf("log %s, want %s (the answer applied once, by the next owner)", got, want)
	}
}

// A drain called off hands the withheld answer over and runs what was
// queued, on the same owner.
func TestADrainCalledOffGoesOn(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("drain-off")
	a, stA := start(t, log, key, 1, approval)
	submit(t, a, message("m-1", "refund 1234"))
	waitFor(t, "AwaitingInput", awaiting(stA))
	drain(t, a, true)
	waitFor(t, "parked", parked(stA))
	submit(t, a, answer("a-1", "approve-1", "approve"))
	submit(t, a, message("m-2", "refund 99"))

	drain(t, a, false)
	waitFor(t, "the second turn asking", func() bool {
		s := stA.last()
		return s.Prompt != nil && s.Prompt.ID != "approve-1"
	})
	if stA.last().Parked {
		t.Fatal("still parked after the drain was called off")
	}
	want := "[user_message assistant_message prompt answer user_message assistant_message turn_finished assistant_message prompt]"
	if got := fmt.Sprint(types(t, log, key)); got != want {
		t.Fatalf("log %s, want %s", got, want)
	}
}
