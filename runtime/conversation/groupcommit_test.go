package conversation_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
)

// heldLog holds the first append after hold is armed until release is
// closed, and counts appends.
type heldLog struct {
	countingLog
	armed   chan struct{} // closed: hold the next append
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	fail    error // the held append's outcome, if set
}

func newHeldLog() *heldLog {
	return &heldLog{countingLog: countingLog{Log: memory.New()}, armed: make(chan struct{}), entered: make(chan struct{}), release: make(chan struct{})}
}

func (l *heldLog) Append(ctx context.Context, k eventlog.Key, epoch int64, events []eventlog.Event) (int64, error) {
	held := false
	select {
	case <-l.armed:
		l.once.Do(func() { held = true })
	default:
	}
	if held {
		close(l.entered)
		<-l.release
		if l.fail != nil {
			return 0, l.fail
		}
	}
	return l.countingLog.Append(ctx, k, epoch, events)
}

// waitingTurn blocks each turn until its context ends: messages stay
// queued behind the first.
var waitingTurn = conversation.HandlerFunc(func(ctx context.Context, _ *conversation.Turn) error {
	<-ctx.Done()
	return ctx.Err()
})

// submitWhileHeld submits first and, once its append is held, the others
// concurrently, waits until all of them wait for the conversation, lets the
// append go and returns every submitter's outcome (first's at 0).
func submitWhileHeld(t *testing.T, c *conversation.Conversation, log *heldLog, first protocol.ClientFrame, others []protocol.ClientFrame) ([]protocol.ServerFrame, []error) {
	t.Helper()
	acks := make([]protocol.ServerFrame, 1+len(others))
	errs := make([]error, 1+len(others))
	var wg sync.WaitGroup
	close(log.armed)
	wg.Go(func() { acks[0], errs[0] = c.Submit(context.Background(), first) })
	<-log.entered
	for i, f := range others {
		wg.Go(func() { acks[i+1], errs[i+1] = c.Submit(context.Background(), f) })
	}
	waitFor(t, fmt.Sprintf("%d messages waiting", len(others)), func() bool { return c.Waiting() == len(others) })
	close(log.release)
	wg.Wait()
	return acks, errs
}

// TestMessagesWaitingForAWriteGoOutTogether: 15 clients' messages that
// arrive while one is being written go out together in the next write;
// each is acknowledged with its own event's sequence number, and none is
// lost or written twice.
func TestMessagesWaitingForAWriteGoOutTogether(t *testing.T) {
	log := newHeldLog()
	key := eventlogtest.NewKey("group-commit")
	c, _ := start(t, log, key, 1, waitingTurn, func(cfg *conversation.Config) { cfg.MaxQueued = 16 })
	var others []protocol.ClientFrame
	for i := 1; i < 16; i++ {
		f := message(fmt.Sprintf("m-%d", i), fmt.Sprintf("hello %d", i))
		f.Subject = fmt.Sprintf("client-%d", i)
		others = append(others, f)
	}
	acks, errs := submitWhileHeld(t, c, log, message("m-0", "first"), others)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("submitter %d: %v", i, err)
		}
	}
	if got, want := log.writes(), "[[user_message] [user_message user_message user_message user_message user_message user_message user_message user_message user_message user_message user_message user_message user_message user_message user_message]]"; got != want {
		t.Errorf("appends %s, want %s", got, want)
	}
	events, err := log.Read(context.Background(), key, 0, eventlog.MaxReadEvents)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 16 {
		t.Fatalf("%d events, want 16", len(events))
	}
	for i, ack := range acks {
		id := fmt.Sprintf("m-%d", i)
		if ack.Type != protocol.TypeAck || ack.ID != id || ack.Duplicate || ack.Seq < 1 || ack.Seq > 16 || events[ack.Seq-1].ClientID != id {
			t.Errorf("submitter %d: ack %+v", i, ack)
		}
	}
	if c.Waiting() != 0 {
		t.Errorf("%d still waiting", c.Waiting())
	}
}

// TestMessagesWaitingKeepTheBusyPolicy: what the Agent's busy policy
// refuses is not taken along (TestTakeWaiting has every rule). Under
// Enqueue, with a turn running and room for 3 queued, the first waiting
// one writes itself and takes along only as many as the queue holds; the
// last is refused as a full queue.
func TestMessagesWaitingKeepTheBusyPolicy(t *testing.T) {
	cases := []struct {
		policy     tetherv1alpha1.BusyPolicy
		runFirst   bool // a turn runs before the held write
		wantCodes  string
		wantWrites string
	}{
		{tetherv1alpha1.BusyPolicyEnqueue, true, "[   queue_full]", "[[user_message] [user_message user_message]]"},
	}
	for _, tc := range cases {
		t.Run(string(tc.policy), func(t *testing.T) {
			log := newHeldLog()
			key := eventlogtest.NewKey("busy")
			c, _ := start(t, log, key, 1, waitingTurn, func(cfg *conversation.Config) { cfg.BusyPolicy, cfg.MaxQueued = tc.policy, 3 })
			if tc.runFirst {
				submit(t, c, message("m-run", "running"))
				waitFor(t, "the turn running", func() bool { return log.writes() == "[[user_message]]" })
				log.mu.Lock()
				log.appends = nil
				log.mu.Unlock()
			}
			others := []protocol.ClientFrame{message("m-2", "b"), message("m-3", "c"), message("m-4", "d")}
			_, errs := submitWhileHeld(t, c, log, message("m-1", "a"), others)
			var codes []string
			for _, err := range errs {
				var perr *protocol.Error
				switch {
				case err == nil:
					codes = append(codes, "")
				case errors.As(err, &perr):
					codes = append(codes, string(perr.Code))
				default:
					t.Fatalf("error %v", err)
				}
			}
			slices.Sort(codes)
			if fmt.Sprint(codes) != tc.wantCodes {
				t.Errorf("outcomes %q, want %q", codes, tc.wantCodes)
			}
			if got := log.writes(); got != tc.wantWrites {
				t.Errorf("appends %s, want %s", got, tc.wantWrites)
			}
		})
	}
}
