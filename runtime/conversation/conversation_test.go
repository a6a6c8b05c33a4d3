package conversation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
)

// approval asks a human to approve each request and answers accordingly.
var approval = conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error {
	if err := t.Send(ctx, "Looking up "+t.Input); err != nil {
		return err
	}
	answer, err := t.Ask(ctx, fmt.Sprintf("approve-%d", t.Seq), "Approve "+t.Input+"?", "approve", "reject")
	if err != nil {
		return err
	}
	return t.Send(ctx, "You said "+answer)
})

// statuses records what an owner publishes.
type statuses struct {
	mu   sync.Mutex
	list []conversation.Status
}

func (s *statuses) publish(_ context.Context, st conversation.Status) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, st)
	return nil
}

func (s *statuses) last() conversation.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.list) == 0 {
		return conversation.Status{}
	}
	return s.list[len(s.list)-1]
}

func start(t *testing.T, log eventlog.Log, key eventlog.Key, epoch int64, h conversation.Handler, mutate ...func(*conversation.Config)) (*conversation.Conversation, *statuses) {
	t.Helper()
	st := &statuses{}
	cfg := conversation.Config{Key: key, Epoch: epoch, Log: log, Handler: h, Status: st.publish, BusyPolicy: tetherv1alpha1.BusyPolicyEnqueue, MaxQueued: 4}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := conversation.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(nil, protocol.CloseGoingAway) })
	return c, st
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	await.Until(t, 5*time.Second, what, cond)
}

func message(id, text string) protocol.ClientFrame {
	return protocol.ClientFrame{Type: protocol.TypeMessage, ID: id, Text: text}
}

func answer(id, promptID, text string) protocol.ClientFrame {
	return protocol.ClientFrame{Type: protocol.TypeAnswer, ID: id, PromptID: promptID, Text: text}
}

func submit(t *testing.T, c *conversation.Conversation, f protocol.ClientFrame) protocol.ServerFrame {
	t.Helper()
	ack, err := c.Submit(context.Background(), f)
	if err != nil {
		t.Fatalf("submit %+v: %v", f, err)
	}
	return ack
}

// types lists the event types of a log.
func types(t *testing.T, log eventlog.Log, key eventlog.Key) []string {
	t.Helper()
	events, err := log.Read(context.Background(), key, 0, eventlog.MaxReadEvents)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		out = append(out, e.Type)
	}
	return out
}

func awaiting(st *statuses) func() bool {
	return func() bool { return st.last().Phase == tetherv1alpha1.PhaseAwaitingInput }
}

func TestHumanInTheLoop(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("hitl")
	c, st := start(t, log, key, 1, approval)

	if ack := submit(t, c, message("m-1", "refund 1234")); ack.Type != protocol.TypeAck || ack.Seq != 1 || ack.Duplicate {
		t.Fatalf("ack %+v", ack)
	}
	waitFor(t, "AwaitingInput", awaiting(st))
	s := st.last()
	if s.Prompt == nil || s.Prompt.ID != "approve-1" || s.Prompt.Text != "Approve refund 1234?" || s.PromptSeq != 3 {
		t.Fatalf("status %+v", s)
	}

	sub, err := c.Subscribe(context.Background(), protocol.Cursor{After: 0})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range replayed(t, sub) {
		got = append(got, f.Type+":"+f.Event)
	}
	want := []string{"event:user_message", "event:assistant_message", "event:prompt", "replay_complete:", "pending_prompt:"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("bind sequence %v, want %v", got, want)
	}
	if rc := replayed(t, sub)[3]; !*rc.Complete || rc.LastSeq != 3 {
		t.Errorf("replay_complete %+v", rc)
	}

	submit(t, c, answer("a-1", "approve-1", "approve"))
	waitFor(t, "the turn to finish", func() bool {
		ts := types(t, log, key)
		return len(ts) > 0 && ts[len(ts)-1] == protocol.EventTurnFinished
	})
	if s := st.last(); s.Phase != tetherv1alpha1.PhaseRunning || s.Prompt != nil {
		t.Errorf("after the answer: %+v, want Running without a prompt", s)
	}
	// The bound socket saw the rest live, in order.
	var live []string
	for len(live) < 3 {
		select {
		case f := <-sub.C:
			if f.Type == protocol.TypeEvent {
				live = append(live, f.Event)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("live frames so far: %v", live)
		}
	}
	if fmt.Sprint(live) != "[answer assistant_message turn_finished]" {
		t.Errorf("live events %v", live)
	}
}

func TestSameMessageThreeTimesIsAppliedOnce(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("dedup")
	c, st := start(t, log, key, 1, approval)
	first := submit(t, c, message("m-1", "refund 1234"))
	waitFor(t, "AwaitingInput", awaiting(st))
	// The client reconnects (a new subscription) and sends it again, twice.
	if _, err := c.Subscribe(context.Background(), protocol.Cursor{After: 0}); err != nil {
		t.Fatal(err)
	}
	second := submit(t, c, message("m-1", "refund 1234"))
	third := submit(t, c, message("m-1", "refund 1234"))
	if second.Seq != first.Seq || third.Seq != first.Seq || !second.Duplicate || !third.Duplicate || first.Duplicate {
		t.Fatalf("acks %+v %+v %+v", first, second, third)
	}
	// The same holds for answers.
	a1 := submit(t, c, answer("a-1", "approve-1", "approve"))
	a2 := submit(t, c, answer("a-1", "approve-1", "approve"))
	if a2.Seq != a1.Seq || !a2.Duplicate {
		t.Fatalf("answer acks %+v %+v", a1, a2)
	}
	waitFor(t, "the turn to finish", func() bool { return len(types(t, log, key)) == 6 })
	want := "[user_message assistant_message prompt answer assistant_message turn_finished]"
	if got := fmt.Sprint(types(t, log, key)); got != want {
		t.Fatalf("log %s, want %s", got, want)
	}
}

func TestRefusedAnswersChangeNothing(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("refused")
	c, st := start(t, log, key, 1, approval)
	ctx := context.Background()
	if _, err := c.Submit(ctx, answer("a-0", "approve-1", "approve")); !isCode(err, protocol.CodeNoPendingPrompt) {
		t.Fatalf("answer with nothing pending: %v", err)
	}
	submit(t, c, message("m-1", "refund 1234"))
	waitFor(t, "AwaitingInput", awaiting(st))
	before := types(t, log, key)
	for _, tc := range []struct {
		frame protocol.ClientFrame
		code  protocol.Code
	}{
		{answer("a-1", "approve-0", "approve"), protocol.CodePromptMismatch},
		{answer("a-2", "approve-1", "maybe"), protocol.CodeInvalidOption},
		{protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-3", Text: "approve"}, protocol.CodeBadFrame},
	} {
		if _, err := c.Submit(ctx, tc.frame); !isCode(err, tc.code) {
			t.Errorf("%+v: %v, want %s", tc.frame, err, tc.code)
		}
	}
	if after := types(t, log, key); fmt.Sprint(after) != fmt.Sprint(before) || st.last().Phase != tetherv1alpha1.PhaseAwaitingInput {
		t.Fatalf("a refused answer changed the conversation: %v -> %v", before, after)
	}
	// The right answer still works.
	submit(t, c, answer("a-4", "approve-1", "reject"))
}

func isCode(err error, code protocol.Code) bool {
	var perr *protocol.Error
	return errors.As(err, &perr) && perr.Code == code
}

// TestTakeover: owner A waits on a human; owner B, at a newer epoch,
// restores from the log and presents the same prompt without recording it
// again; A can no longer append; the answer given to B completes the turn.
func TestTakeover(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("takeover")
	a, stA := start(t, log, key, 1, approval)
	submit(t, a, message("m-1", "refund 1234"))
	waitFor(t, "A awaiting input", awaiting(stA))

	b, stB := start(t, log, key, 2, approval)
	waitFor(t, "B awaiting input", awaiting(stB))
	if p := stB.last().Prompt; p == nil || p.ID != "approve-1" {
		t.Fatalf("B presents %+v", p)
	}
	sub, err := b.Subscribe(context.Background(), protocol.Cursor{After: 3})
	if err != nil {
		t.Fatal(err)
	}
	if last := replayed(t, sub)[len(replayed(t, sub))-1]; last.Type != protocol.TypePendingPrompt || last.Prompt.ID != "approve-1" || last.Seq != 3 {
		t.Fatalf("B's bind ends with %+v", last)
	}

	// A, with its old state, tries to take the answer: fenced.
	if _, err := a.Submit(context.Background(), answer("a-1", "approve-1", "approve")); !errors.Is(err, conversation.ErrNotOwner) {
		t.Fatalf("A's append after B claimed: %v", err)
	}
	select {
	case <-a.Done():
	case <-time.After(time.Second):
		t.Fatal("A kept running after it was fenced")
	}

	submit(t, b, answer("a-1", "approve-1", "approve"))
	waitFor(t, "B finishing the turn", func() bool { return len(types(t, log, key)) == 6 })
	want := "[user_message assistant_message prompt answer assistant_message turn_finished]"
	if got := fmt.Sprint(types(t, log, key)); got != want {
		t.Fatalf("log %s, want %s (nothing recorded twice)", got, want)
	}
}

// blocking runs turns that wait until released, recording what they got.
type blocking struct {
	release chan struct{}
	mu      sync.Mutex
	inputs  []string
}

func (b *blocking) HandleTurn(ctx context.Context, t *conversation.Turn) error {
	b.mu.Lock()
	b.inputs = append(b.inputs, t.Input)
	b.mu.Unlock()
	select {
	case <-b.release:
		return t.Send(ctx, "done with "+t.Input)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *blocking) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.inputs...)
}

func TestBusyPolicies(t *testing.T) {
	t.Run("Reject", func(t *testing.T) {
		h := &blocking{release: make(chan struct{})}
		c, _ := start(t, memory.New(), eventlogtest.NewKey("reject"), 1, h, func(cfg *conversation.Config) { cfg.BusyPolicy = tetherv1alpha1.BusyPolicyReject })
		submit(t, c, message("m-1", "first"))
		waitFor(t, "the first turn", func() bool { return len(h.seen()) == 1 })
		if _, err := c.Submit(context.Background(), message("m-2", "second")); !isCode(err, protocol.CodeBusy) {
			t.Fatalf("a message during a turn: %v, want busy", err)
		}
		close(h.release)
	})
	t.Run("Enqueue", func(t *testing.T) {
		h := &blocking{release: make(chan struct{})}
		log, key := memory.New(), eventlogtest.NewKey("enqueue")
		c, _ := start(t, log, key, 1, h, func(cfg *conversation.Config) { cfg.MaxQueued = 2 })
		submit(t, c, message("m-1", "first"))
		waitFor(t, "the first turn", func() bool { return len(h.seen()) == 1 })
		submit(t, c, message("m-2", "second"))
		submit(t, c, message("m-3", "third"))
		if _, err := c.Submit(context.Background(), message("m-4", "fourth")); !isCode(err, protocol.CodeQueueFull) {
			t.Fatalf("a third queued message: %v, want queue_full", err)
		}
		close(h.release)
		waitFor(t, "the queued turns, in order", func() bool { return fmt.Sprint(h.seen()) == "[first second third]" })
	})
	t.Run("Interrupt", func(t *testing.T) {
		h := &blocking{release: make(chan struct{})}
		log, key := memory.New(), eventlogtest.NewKey("interrupt")
		c, _ := start(t, log, key, 1, h, func(cfg *conversation.Config) { cfg.BusyPolicy = tetherv1alpha1.BusyPolicyInterrupt })
		submit(t, c, message("m-1", "first"))
		waitFor(t, "the first turn", func() bool { return len(h.seen()) == 1 })
		submit(t, c, message("m-2", "never mind, second"))
		waitFor(t, "the second turn", func() bool { return len(h.seen()) == 2 })
		close(h.release)
		waitFor(t, "the second turn finished", func() bool {
			return fmt.Sprint(types(t, log, key)) == "[user_message user_message turn_finished assistant_message turn_finished]"
		})
	})
}

func TestReplayAfterRetentionSaysIncomplete(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("trimmed")
	c, st := start(t, log, key, 1, approval)
	submit(t, c, message("m-1", "refund 1234"))
	waitFor(t, "AwaitingInput", awaiting(st))
	if err := log.Trim(context.Background(), key, 1, 1); err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(context.Background(), protocol.Cursor{After: 0})
	if err != nil {
		t.Fatal(err)
	}
	var marker protocol.ServerFrame
	for _, f := range replayed(t, sub) {
		if f.Type == protocol.TypeReplayComplete {
			marker = f
		}
	}
	if marker.Complete == nil || *marker.Complete || marker.FirstSeq != 3 {
		t.Fatalf("replay_complete %+v, want complete=false from seq 3", marker)
	}
	// A client that has seen up to 2 misses nothing.
	sub2, err := c.Subscribe(context.Background(), protocol.Cursor{After: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range replayed(t, sub2) {
		if f.Type == protocol.TypeReplayComplete && !*f.Complete {
			t.Fatalf("resume after 2 reported incomplete: %+v", f)
		}
	}
}

// TestCursorThatDoesNotNameTheHistoryIsReset: a cursor past the end of the
// log, or from another history of the same name, is never honoured: the
// bind starts with a reset frame saying which, then replays the history
// from its start; a cursor that names the history is honoured.
func TestCursorThatDoesNotNameTheHistoryIsReset(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("cursor")
	c, st := start(t, log, key, 1, approval)
	submit(t, c, message("m-1", "refund 1234"))
	waitFor(t, "AwaitingInput", awaiting(st))
	b, err := log.Bounds(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		cursor    protocol.Cursor
		reset     string
		firstSeq  int64
		replayLen int // events replayed
	}{
		{"ahead of the log", protocol.Cursor{After: 100000}, protocol.ResetCursorAhead, 1, int(b.LastSeq)},
		{"ahead, with the right log", protocol.Cursor{After: b.LastSeq + 1, Log: b.LogID}, protocol.ResetCursorAhead, 1, int(b.LastSeq)},
		{"another history", protocol.Cursor{After: 2, Log: "another-history-0123"}, protocol.ResetLogChanged, 1, int(b.LastSeq)},
		{"this history", protocol.Cursor{After: 2, Log: b.LogID}, "", 3, int(b.LastSeq) - 2},
		{"at the end, no log given", protocol.Cursor{After: b.LastSeq}, "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := c.Subscribe(context.Background(), tc.cursor)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			var events []int64
			var marker *protocol.ServerFrame
			for i, f := range replayed(t, sub) {
				switch f.Type {
				case protocol.TypeReset:
					if i != 0 {
						t.Fatalf("reset is frame %d of the bind, want the first", i)
					}
					if f.Code != tc.reset || f.Log != b.LogID {
						t.Fatalf("reset %+v, want code %q and log %q", f, tc.reset, b.LogID)
					}
				case protocol.TypeEvent:
					events = append(events, f.Seq)
				case protocol.TypeReplayComplete:
					marker = &f
				}
			}
			if tc.reset != "" && replayed(t, sub)[0].Type != protocol.TypeReset {
				t.Fatalf("no reset frame for cursor %+v: %+v", tc.cursor, replayed(t, sub)[0])
			}
			if tc.reset == "" && replayed(t, sub)[0].Type == protocol.TypeReset {
				t.Fatalf("cursor %+v names the history but was reset", tc.cursor)
			}
			if len(events) != tc.replayLen || (len(events) > 0 && events[0] != tc.firstSeq) {
				t.Fatalf("replayed %v, want %d events from %d", events, tc.replayLen, tc.firstSeq)
			}
			if marker == nil || marker.Log != b.LogID || !*marker.Complete || marker.LastSeq != b.LastSeq {
				t.Fatalf("replay_complete %+v, want complete, last %d, log %q", marker, b.LastSeq, b.LogID)
			}
		})
	}
}

func TestAgentPanicFailsTheConversationOnly(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("panic")
	h := conversation.HandlerFunc(func(context.Context, *conversation.Turn) error { panic("index out of range") })
	c, st := start(t, log, key, 1, h)
	submit(t, c, message("m-1", "hello"))
	waitFor(t, "Failed", func() bool { return st.last().Phase == tetherv1alpha1.PhaseFailed })
	if msg := st.last().Message; msg != "the agent failed: panic: index out of range" {
		t.Errorf("message %q", msg)
	}
	if _, err := c.Submit(context.Background(), message("m-2", "again")); !isCode(err, protocol.CodeFinished) {
		t.Errorf("a message to a failed conversation: %v", err)
	}
}

// lostReply is a store whose next append lands but whose reply is lost, as
// when a connection drops after the server applied the write.
type lostReply struct {
	eventlog.Log
	mu   sync.Mutex
	lose int
}

func (l *lostReply) Append(ctx context.Context, key eventlog.Key, epoch int64, events []eventlog.Event) (int64, error) {
	last, err := l.Log.Append(ctx, key, epoch, events)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil && l.lose > 0 {
		l.lose--
		return 0, errors.New("connection reset by peer")
	}
	return last, err
}

// TestAmbiguousAppendIsNotAppliedTwice: a message whose append landed but
// whose reply was lost is reported as not applied; sent again, it is
// recognised and acknowledged with the sequence number it already has.
func TestAmbiguousAppendIsNotAppliedTwice(t *testing.T) {
	log := &lostReply{Log: memory.New()}
	key := eventlogtest.NewKey("ambiguous")
	c, st := start(t, log, key, 1, approval)
	log.mu.Lock()
	log.lose = 1
	log.mu.Unlock()
	if _, err := c.Submit(context.Background(), message("m-1", "refund 1234")); !isCode(err, protocol.CodeUnavailable) {
		t.Fatalf("first send: %v, want unavailable", err)
	}
	ack := submit(t, c, message("m-1", "refund 1234"))
	if ack.Seq != 1 || !ack.Duplicate {
		t.Fatalf("resend ack %+v, want seq 1 as a duplicate", ack)
	}
	waitFor(t, "AwaitingInput", awaiting(st))
	if got := fmt.Sprint(types(t, log, key)); got != "[user_message assistant_message prompt]" {
		t.Fatalf("log %s", got)
	}
}

func TestRetentionTrimsTheLog(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("retention")
	echo := conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error { return t.Send(ctx, t.Input) })
	c, _ := start(t, log, key, 1, echo, func(cfg *conversation.Config) { cfg.Retention = 20 })
	for i := range 30 {
		submit(t, c, message(fmt.Sprintf("m-%d", i), "hello"))
		waitFor(t, "the turn", func() bool {
			b, _ := log.Bounds(context.Background(), key)
			return b.LastSeq == int64(3*(i+1))
		})
	}
	b, err := log.Bounds(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if held := b.LastSeq - b.FirstSeq + 1; held < 20 || held > 22 {
		t.Fatalf("the log holds %d events (%+v); retention is 20 with a tenth of slack", held, b)
	}
}

func TestAQuestionOverTheLimitsFailsTheConversation(t *testing.T) {
	for name, ask := range map[string]func(context.Context, *conversation.Turn) error{
		"text": func(ctx context.Context, t *conversation.Turn) error {
			_, err := t.Ask(ctx, "p1", strings.Repeat("?", tetherv1alpha1.MaxPromptTextLength+1))
			return err
		},
		"options": func(ctx context.Context, t *conversation.Turn) error {
			_, err := t.Ask(ctx, "p1", "Pick one", "a", "b", "c", "d", "e", "f", "g", "h", "i")
			return err
		},
		"id": func(ctx context.Context, t *conversation.Turn) error {
			_, err := t.Ask(ctx, "no spaces please", "Ok?")
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			log := memory.New()
			key := eventlogtest.NewKey("limits")
			c, st := start(t, log, key, 1, conversation.HandlerFunc(ask))
			submit(t, c, message("m-1", "hello"))
			waitFor(t, "Failed", func() bool { return st.last().Phase == tetherv1alpha1.PhaseFailed })
			if msg := st.last().Message; !strings.Contains(msg, "the agent asked") && !strings.Contains(msg, "the agent offered") {
				t.Errorf("message %q", msg)
			}
			if got := fmt.Sprint(types(t, log, key)); got != "[user_message failed]" {
				t.Errorf("log %s: nothing of the question may be recorded", got)
			}
		})
	}
}

// replays holds each subscription's replay once read: Replay reads the log
// once, and a test looks at the frames more than once.
var replays sync.Map // *conversation.Subscription → []protocol.ServerFrame

// replayed is sub's replay, read through Replay as a socket reads it.
func replayed(t *testing.T, sub *conversation.Subscription) []protocol.ServerFrame {
	t.Helper()
	if frames, ok := replays.Load(sub); ok {
		return frames.([]protocol.ServerFrame)
	}
	var frames []protocol.ServerFrame
	if err := sub.Replay(context.Background(), func(f protocol.ServerFrame) error {
		frames = append(frames, f)
		return nil
	}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	replays.Store(sub, frames)
	return frames
}

// TestAnAppendBehindTheOwnersBackIsReadBack: an event lands in the log at
// the owner's epoch without the owner writing it (an earlier instance of the
// same owner, whose append was in flight when it let go). The owner's next
// append finds the log past what it knew: it reads the gap back, so the late
// message is known (acknowledged again as a duplicate), its turn runs, and
// bound sockets see every event once and in order.
func TestAnAppendBehindTheOwnersBackIsReadBack(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("late-append")
	var mu sync.Mutex
	var inputs []string
	echo := conversation.HandlerFunc(func(ctx context.Context, turn *conversation.Turn) error {
		mu.Lock()
		inputs = append(inputs, turn.Input)
		mu.Unlock()
		return turn.Send(ctx, turn.Input)
	})
	c, _ := start(t, log, key, 1, echo)
	sub, err := c.Subscribe(context.Background(), protocol.Cursor{After: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	data, _ := json.Marshal(protocol.TextData{Text: "late"})
	late, err := log.Append(context.Background(), key, 1, []eventlog.Event{{Type: protocol.EventUserMessage, ClientID: "m-late", Data: data}})
	if err != nil {
		t.Fatal(err)
	}
	submit(t, c, message("m-2", "next"))
	if ack := submit(t, c, message("m-late", "late")); !ack.Duplicate || ack.Seq != late {
		t.Fatalf("the late message sent again: %+v, want a duplicate of seq %d", ack, late)
	}
	waitFor(t, "both turns", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(inputs) == 2
	})
	mu.Lock()
	if fmt.Sprint(inputs) != "[late next]" {
		t.Errorf("turns ran for %v, want [late next]", inputs)
	}
	mu.Unlock()
	var seqs []int64
	for len(seqs) < 2 {
		f, ok := <-sub.C
		if !ok {
			t.Fatalf("the socket was closed (%d %s) after %v", sub.Code, sub.Reason, seqs)
		}
		if f.Type == protocol.TypeEvent {
			seqs = append(seqs, f.Seq)
		}
	}
	if fmt.Sprint(seqs) != "[1 2]" {
		t.Fatalf("the socket saw %v, want [1 2]", seqs)
	}
}
