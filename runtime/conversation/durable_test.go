package conversation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/eventlog/redislog"
	"tether.dev/tether/internal/testing/testenv"
	"tether.dev/tether/internal/testing/testredis"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
)

// ledger stands for the outside world: how often the LLM was really
// called, and the refunds made, by idempotency key.
type ledger struct {
	llmCalls atomic.Int32
	mu       sync.Mutex
	refunds  map[string]int // idempotency key -> amount
	attempts int
}

func (l *ledger) refund(key string, amount int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts++
	l.refunds[key] = amount // an idempotent API: the same key refunds once
}

// refundAgent is an LLM agent: each real run of its "propose" step picks
// another amount, as a model would. The question it asks comes from
// question, so a test can change the agent between owners. block, when
// set, holds the refund step until released or cancelled (the owner is
// lost while the refund runs).
type refundAgent struct {
	world    *ledger
	question func(amount int) string
	block    chan struct{}
}

func (a *refundAgent) HandleTurn(ctx context.Context, t *conversation.Turn) error {
	amount, err := conversation.StepOf(ctx, t, "propose-refund", func(context.Context, string) (int, error) {
		return 100 + 50*int(a.world.llmCalls.Add(1)), nil // 150, then 200, ...
	})
	if err != nil {
		return err
	}
	if err := t.Send(ctx, fmt.Sprintf("I propose refunding %d EUR", amount)); err != nil {
		return err
	}
	decision, err := t.Ask(ctx, "refund", a.question(amount), "approve", "reject")
	if err != nil {
		return err
	}
	if decision != "approve" {
		return t.Send(ctx, "rejected: nothing refunded")
	}
	if _, err := t.Step(ctx, "refund", func(ctx context.Context, key string) (json.RawMessage, error) {
		if a.block != nil {
			select {
			case <-a.block:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		a.world.refund(key, amount)
		return json.RawMessage(`"done"`), nil
	}); err != nil {
		return err
	}
	return t.Send(ctx, fmt.Sprintf("approved: refunded %d EUR", amount))
}

func refundQuestion(amount int) string { return fmt.Sprintf("Refund %d EUR?", amount) }

// forEachStore runs a scenario on each store: memory, the kubernetes store
// on a real API server, and a real Redis.
func forEachStore(t *testing.T, scenario func(*testing.T, eventlog.Log)) {
	t.Run("memory", func(t *testing.T) { scenario(t, memory.New()) })
	t.Run("kubernetes", func(t *testing.T) {
		env := testenv.Start(t)
		for _, ns := range []string{"ns-steps-after", "ns-steps-before", "ns-diverged"} {
			if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
				t.Fatal(err)
			}
		}
		scenario(t, kubelog.New(env.Client))
	})
	t.Run("redis", func(t *testing.T) {
		log, err := redislog.New(redislog.Options{Addrs: []string{testredis.Start(t).Addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = log.Close() })
		scenario(t, log)
	})
}

// transcript is the log as "type:detail" lines, and the texts of messages.
func transcript(t *testing.T, log eventlog.Log, key eventlog.Key) []string {
	t.Helper()
	events, err := log.Read(context.Background(), key, 0, eventlog.MaxReadEvents)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		line := e.Type
		switch e.Type {
		case protocol.EventAssistantMessage:
			var d protocol.TextData
			_ = json.Unmarshal(e.Data, &d)
			line += ":" + d.Text
		case protocol.EventPrompt:
			var p conversation.PromptData
			_ = json.Unmarshal(e.Data, &p)
			line += ":" + p.Text
		case protocol.EventStep:
			var s protocol.StepData
			_ = json.Unmarshal(e.Data, &s)
			line += ":" + s.Name + "=" + string(s.Result)
		case protocol.EventAnswer:
			var a protocol.AnswerData
			_ = json.Unmarshal(e.Data, &a)
			line += ":" + a.Text
		}
		out = append(out, line)
	}
	return out
}

func promptSeq(t *testing.T, st *statuses) int64 {
	t.Helper()
	return st.last().PromptSeq
}

// TestStepsReplayedAfterTheAnswer: the owner is lost after the human's
// answer was recorded, while the refund runs. The new owner does not call
// the LLM again (it would propose 200), gets the recorded proposal, the
// recorded answer to the very question the human saw, runs the refund that
// had not recorded its result again under the same idempotency key, and
// refunds the 150 EUR the human approved.
func TestStepsReplayedAfterTheAnswer(t *testing.T) { forEachStore(t, testStepsReplayedAfterTheAnswer) }

func testStepsReplayedAfterTheAnswer(t *testing.T, log eventlog.Log) {
	key := eventlogtest.NewKey("steps-after")
	world := &ledger{refunds: map[string]int{}}
	a, stA := start(t, log, key, 1, &refundAgent{world: world, question: refundQuestion, block: make(chan struct{})})
	submit(t, a, message("m-1", "refund order 1234"))
	waitFor(t, "A awaiting input", awaiting(stA))
	submit(t, a, answer("a-1", "refund", "approve"))
	waitFor(t, "the answer recorded", func() bool { return strings.Contains(fmt.Sprint(types(t, log, key)), "answer") })
	a.Stop(errors.New("the pod is gone"), protocol.CloseNotOwner) // the refund was running

	b, _ := start(t, log, key, 2, &refundAgent{world: world, question: refundQuestion})
	waitFor(t, "B finishing the turn", func() bool { return strings.Contains(fmt.Sprint(types(t, log, key)), "turn_finished") })
	_ = b

	if n := world.llmCalls.Load(); n != 1 {
		t.Fatalf("the LLM was called %d times; the new owner must reuse the recorded proposal", n)
	}
	got := transcript(t, log, key)
	want := []string{"user_message", "step:propose-refund=150", "assistant_message:I propose refunding 150 EUR", "prompt:Refund 150 EUR?",
		"answer:approve", `step:refund="done"`, "assistant_message:approved: refunded 150 EUR", "turn_finished"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("log\n%q\nwant\n%q", got, want)
	}
	if len(world.refunds) != 1 {
		t.Fatalf("refunds %v: one idempotency key for the one refund step", world.refunds)
	}
	for k, amount := range world.refunds {
		if amount != 150 || !strings.HasSuffix(k, "/refund/0") {
			t.Fatalf("refund %s of %d EUR, want 150 under the step's key", k, amount)
		}
	}
}

// TestQuestionAskedAgainBeforeTheAnswer: the owner is lost while the
// question waits. The new owner asks the identical question (the recorded
// one, not a new one), it is answered once, and the approved amount is the
// one the human saw.
func TestQuestionAskedAgainBeforeTheAnswer(t *testing.T) {
	forEachStore(t, testQuestionAskedAgainBeforeTheAnswer)
}

func testQuestionAskedAgainBeforeTheAnswer(t *testing.T, log eventlog.Log) {
	key := eventlogtest.NewKey("steps-before")
	world := &ledger{refunds: map[string]int{}}
	a, stA := start(t, log, key, 1, &refundAgent{world: world, question: refundQuestion})
	submit(t, a, message("m-1", "refund order 1234"))
	waitFor(t, "A awaiting input", awaiting(stA))
	asked := promptSeq(t, stA)
	a.Stop(errors.New("the pod is gone"), protocol.CloseNotOwner)

	b, stB := start(t, log, key, 2, &refundAgent{world: world, question: refundQuestion})
	waitFor(t, "B awaiting input", awaiting(stB))
	if p := stB.last().Prompt; p == nil || p.Text != "Refund 150 EUR?" || promptSeq(t, stB) != asked {
		t.Fatalf("B asks %+v at seq %d, want the recorded question at %d", p, promptSeq(t, stB), asked)
	}
	ack := submit(t, b, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-1", PromptID: "refund", PromptSeq: asked, Text: "approve"})
	if ack.Duplicate {
		t.Fatalf("ack %+v", ack)
	}
	waitFor(t, "B finishing the turn", func() bool { return strings.Contains(fmt.Sprint(types(t, log, key)), "turn_finished") })
	got := transcript(t, log, key)
	want := []string{"user_message", "step:propose-refund=150", "assistant_message:I propose refunding 150 EUR", "prompt:Refund 150 EUR?",
		"answer:approve", `step:refund="done"`, "assistant_message:approved: refunded 150 EUR", "turn_finished"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("log\n%q\nwant\n%q", got, want)
	}
	if n := world.llmCalls.Load(); n != 1 {
		t.Fatalf("the LLM was called %d times", n)
	}
}

// TestDivergentReplay: the agent changed between owners and asks another
// question on the re-run. The answer given to the old question is not
// applied to the new one: the divergence is recorded (an event, the
// status), the new question is presented, an answer naming the old
// question is refused, and the answer to the new one finishes the turn.
func TestDivergentReplay(t *testing.T) { forEachStore(t, testDivergentReplay) }

func testDivergentReplay(t *testing.T, log eventlog.Log) {
	key := eventlogtest.NewKey("diverged")
	world := &ledger{refunds: map[string]int{}}
	a, stA := start(t, log, key, 1, &refundAgent{world: world, question: refundQuestion, block: make(chan struct{})})
	submit(t, a, message("m-1", "refund order 1234"))
	waitFor(t, "A awaiting input", awaiting(stA))
	oldSeq := promptSeq(t, stA)
	submit(t, a, answer("a-1", "refund", "approve"))
	waitFor(t, "the answer recorded", func() bool { return strings.Contains(fmt.Sprint(types(t, log, key)), "answer") })
	a.Stop(errors.New("the pod is gone"), protocol.CloseNotOwner)

	changed := func(amount int) string { return fmt.Sprintf("Refund %d EUR to the original card?", amount) }
	b, stB := start(t, log, key, 2, &refundAgent{world: world, question: changed})
	waitFor(t, "B asking its new question", awaiting(stB))
	last := stB.last()
	if last.Prompt == nil || last.Prompt.Text != "Refund 150 EUR to the original card?" || last.PromptSeq <= oldSeq {
		t.Fatalf("B presents %+v at seq %d", last.Prompt, last.PromptSeq)
	}
	if !strings.Contains(last.Diverged, "question refund") {
		t.Fatalf("status says diverged %q, want where", last.Diverged)
	}
	if len(world.refunds) != 0 {
		t.Fatalf("refunded %v on an answer to another question", world.refunds)
	}
	// The human's answer to the old question is not an answer to this one.
	if _, err := b.Submit(context.Background(), protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-old", PromptID: "refund", PromptSeq: oldSeq, Text: "approve"}); err == nil ||
		!strings.Contains(err.Error(), "not the one answered") {
		t.Fatalf("an answer naming the old question: %v, want prompt_mismatch", err)
	}
	submit(t, b, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-2", PromptID: "refund", PromptSeq: last.PromptSeq, Text: "approve"})
	waitFor(t, "B finishing the turn", func() bool { return strings.Contains(fmt.Sprint(types(t, log, key)), "turn_finished") })
	got := transcript(t, log, key)
	want := []string{"user_message", "step:propose-refund=150", "assistant_message:I propose refunding 150 EUR", "prompt:Refund 150 EUR?",
		"answer:approve", "replay_diverged", "prompt:Refund 150 EUR to the original card?", "answer:approve", `step:refund="done"`,
		"assistant_message:approved: refunded 150 EUR", "turn_finished"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("log\n%q\nwant\n%q", got, want)
	}
}

// TestStepResultsStayWithTheAgent: a client sees a step's name, never its
// result, and every sequence number.
func TestStepResultsStayWithTheAgent(t *testing.T) {
	log, key := memory.New(), eventlogtest.NewKey("step-frames")
	world := &ledger{refunds: map[string]int{}}
	c, st := start(t, log, key, 1, &refundAgent{world: world, question: refundQuestion})
	submit(t, c, message("m-1", "refund order 1234"))
	waitFor(t, "awaiting input", awaiting(st))
	sub, err := c.Subscribe(context.Background(), protocol.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i, f := range replayed(t, sub)[:3] {
		if f.Seq != int64(i+1) {
			t.Fatalf("frame %d has seq %d", i, f.Seq)
		}
	}
	step := replayed(t, sub)[1]
	if step.Event != protocol.EventStep || string(step.Data) != `{"name":"propose-refund"}` {
		t.Fatalf("a client got the step frame %+v (data %s)", step, step.Data)
	}
}

// TestStepLimits: a step's name and result are bounded, with a clear error.
func TestStepLimits(t *testing.T) {
	errs := make(chan error, 2)
	h := conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error {
		_, err := t.Step(ctx, "big", func(context.Context, string) (json.RawMessage, error) {
			return json.RawMessage(`"` + strings.Repeat("x", conversation.MaxStepResultBytes) + `"`), nil
		})
		errs <- err
		_, err = t.Step(ctx, strings.Repeat("n", 65), func(context.Context, string) (json.RawMessage, error) { return nil, nil })
		errs <- err
		return nil
	})
	c, _ := start(t, memory.New(), eventlogtest.NewKey("step-limits"), 1, h)
	submit(t, c, message("m-1", "go"))
	if err := <-errs; err == nil || !strings.Contains(err.Error(), "at most 32768 bytes") {
		t.Fatalf("an oversized result: %v", err)
	}
	if err := <-errs; err == nil || !strings.Contains(err.Error(), "1 to 64 bytes") {
		t.Fatalf("an oversized name: %v", err)
	}
}

// TestShownStep: a shown step tells clients its summary before it runs and
// with its result, never the result itself; run again after a move, its
// step_started and result are found, not recorded twice.
func TestShownStep(t *testing.T) {
	log, key := memory.New(), eventlogtest.NewKey("shown")
	var calls atomic.Int32
	release := make(chan struct{})
	h := conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error {
		_, err := conversation.StepOf(ctx, t, "refund-api", func(ctx context.Context, _ string) (string, error) {
			if calls.Add(1) == 1 {
				select { // the first owner is lost while the call runs
				case <-release:
				case <-ctx.Done():
					return "", ctx.Err()
				}
			}
			return "secret-receipt-77", nil
		}, conversation.Shown("calling the refund API"))
		if err != nil {
			return err
		}
		return t.Send(ctx, "refunded")
	})
	a, _ := start(t, log, key, 1, h)
	sub, err := a.Subscribe(context.Background(), protocol.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	submit(t, a, message("m-1", "refund"))
	var started *protocol.ServerFrame
	for started == nil {
		select {
		case f := <-sub.C:
			if f.Type == protocol.TypeEvent && f.Event == protocol.EventStepStarted {
				started = f
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no step_started while the step ran")
		}
	}
	if string(started.Data) != `{"name":"refund-api","summary":"calling the refund API"}` {
		t.Fatalf("step_started frame %s", started.Data)
	}
	sub.Close()
	a.Stop(errors.New("the pod is gone"), protocol.CloseNotOwner)
	close(release)

	b, _ := start(t, log, key, 2, h)
	waitFor(t, "B finishing the turn", func() bool { return strings.Contains(fmt.Sprint(types(t, log, key)), "turn_finished") })
	if got := fmt.Sprint(types(t, log, key)); got != "[user_message step_started step assistant_message turn_finished]" {
		t.Fatalf("log %s", got)
	}
	replay, err := b.Subscribe(context.Background(), protocol.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	defer replay.Close()
	for _, f := range replayed(t, replay) {
		if strings.Contains(string(f.Data), "secret-receipt") {
			t.Fatalf("a client got the step's result: %+v %s", f, f.Data)
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("the step ran %d times: once cut short, once to the end", calls.Load())
	}
}

// reviewer puts a refund tool call before a human and acts on the decision.
var reviewer = conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error {
	d, err := t.Review(ctx, "refund-call", "Run this refund?", protocol.Review{
		Action: "refund", Args: json.RawMessage(`{"order":1234,"amount":150}`),
		Description: "Refund **150 EUR** to the card of order 1234.", Allowed: []string{"accept", "edit", "respond"},
	})
	if err != nil {
		return err
	}
	switch d.Decision {
	case protocol.DecisionEdit:
		return t.Send(ctx, "refunding with "+string(d.Args))
	case protocol.DecisionRespond:
		return t.Send(ctx, "noted: "+d.Text)
	}
	return t.Send(ctx, "refunding as proposed")
})

// TestReviewPrompt: a tool call put before a human: the prompt a client
// gets carries the action, its arguments, the description and the allowed
// decisions; a decision that is not allowed, a plain text answer and an
// edit whose arguments are not an object are refused; an edit is applied
// with the edited arguments, and a new owner replays that same decision.
func TestReviewPrompt(t *testing.T) {
	log, key := memory.New(), eventlogtest.NewKey("review")
	a, st := start(t, log, key, 1, reviewer)
	submit(t, a, message("m-1", "refund order 1234"))
	waitFor(t, "awaiting the review", awaiting(st))
	sub, err := a.Subscribe(context.Background(), protocol.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	pending := replayed(t, sub)[len(replayed(t, sub))-1]
	sub.Close()
	if r := pending.Prompt.Review; pending.Type != protocol.TypePendingPrompt || r == nil || r.Action != "refund" ||
		string(r.Args) != `{"order":1234,"amount":150}` || fmt.Sprint(r.Allowed) != "[accept edit respond]" {
		t.Fatalf("pending prompt %+v", pending.Prompt)
	}
	seq := pending.Seq
	for _, bad := range []protocol.ClientFrame{
		{Type: protocol.TypeAnswer, ID: "x-1", PromptID: "refund-call", PromptSeq: seq, Decision: protocol.DecisionIgnore},
		{Type: protocol.TypeAnswer, ID: "x-2", PromptID: "refund-call", PromptSeq: seq, Text: "yes"},
		{Type: protocol.TypeAnswer, ID: "x-3", PromptID: "refund-call", PromptSeq: seq, Decision: protocol.DecisionEdit, Args: json.RawMessage(`[1]`)},
	} {
		if _, err := a.Submit(context.Background(), bad); err == nil {
			t.Fatalf("%+v was applied", bad)
		}
	}
	submit(t, a, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "d-1", PromptID: "refund-call", PromptSeq: seq,
		Decision: protocol.DecisionEdit, Args: json.RawMessage(`{"order":1234,"amount":120}`)})
	waitFor(t, "the turn finished", func() bool { return strings.Contains(fmt.Sprint(types(t, log, key)), "turn_finished") })
	got := transcript(t, log, key)
	if got[len(got)-2] != `assistant_message:refunding with {"order":1234,"amount":120}` {
		t.Fatalf("log %q", got)
	}

	// A plain question refuses a decision.
	b, stB := start(t, memory.New(), eventlogtest.NewKey("plain"), 1, approval)
	submit(t, b, message("m-1", "refund"))
	waitFor(t, "awaiting input", awaiting(stB))
	if _, err := b.Submit(context.Background(), protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "d-1", PromptID: "approve-1", Decision: protocol.DecisionAccept}); err == nil {
		t.Fatal("a decision answered a plain question")
	}
}

// TestReviewReplayed: the owner is lost after the human's edit was
// recorded; the new owner reviews the same action and gets that edit back.
func TestReviewReplayed(t *testing.T) {
	log, key := memory.New(), eventlogtest.NewKey("review-replay")
	block := make(chan struct{})
	h := conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error {
		if err := reviewer(ctx, t); err != nil {
			return err
		}
		// Works on without a step: what it sent is written now.
		if err := t.Flush(ctx); err != nil {
			return err
		}
		select { // lost before the turn ends
		case <-block:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	a, st := start(t, log, key, 1, h)
	submit(t, a, message("m-1", "refund order 1234"))
	waitFor(t, "awaiting the review", awaiting(st))
	submit(t, a, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "d-1", PromptID: "refund-call", PromptSeq: st.last().PromptSeq,
		Decision: protocol.DecisionRespond, Text: "wait for the customer"})
	waitFor(t, "the reply recorded", func() bool {
		return strings.Contains(fmt.Sprint(transcript(t, log, key)), "noted: wait for the customer")
	})
	a.Stop(errors.New("the pod is gone"), protocol.CloseNotOwner)
	close(block)
	start(t, log, key, 2, reviewer)
	waitFor(t, "B finishing the turn", func() bool { return strings.Contains(fmt.Sprint(types(t, log, key)), "turn_finished") })
	want := "[user_message prompt:Run this refund? answer:wait for the customer assistant_message:noted: wait for the customer turn_finished]"
	if got := fmt.Sprint(transcript(t, log, key)); got != want {
		t.Fatalf("log %s, want %s", got, want)
	}
}

// TestDivergentSend: a turn run again sends another text than it had
// recorded (its agent changed). The recorded text already reached the
// client and stays; the divergence is recorded and the new text follows it
// as a new message: nothing is retracted, nothing is silently merged.
func TestDivergentSend(t *testing.T) {
	log, key := memory.New(), eventlogtest.NewKey("diverged-send")
	saying := func(text string) conversation.Handler {
		return conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error {
			if err := t.Send(ctx, text); err != nil {
				return err
			}
			_, err := t.Ask(ctx, "go-on", "Go on?", "yes")
			return err
		})
	}
	a, stA := start(t, log, key, 1, saying("I propose 150 EUR"))
	submit(t, a, message("m-1", "refund"))
	waitFor(t, "A awaiting input", awaiting(stA))
	a.Stop(errors.New("the pod is gone"), protocol.CloseNotOwner)

	_, stB := start(t, log, key, 2, saying("I propose 200 EUR"))
	waitFor(t, "B awaiting input", func() bool { return stB.last().Diverged != "" && stB.last().Phase == "AwaitingInput" })
	want := `[user_message assistant_message:I propose 150 EUR prompt:Go on? replay_diverged assistant_message:I propose 200 EUR prompt:Go on?]`
	if got := fmt.Sprint(transcript(t, log, key)); got != want {
		t.Fatalf("log %s, want %s", got, want)
	}
	if d := stB.last().Diverged; !strings.Contains(d, `message "I propose 150 EUR"`) || !strings.Contains(d, `message "I propose 200 EUR"`) {
		t.Fatalf("diverged %q", d)
	}
}
