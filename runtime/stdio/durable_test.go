package stdio_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/eventlog/redislog"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testenv"
	"tether.dev/tether/internal/testing/testredis"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
	"tether.dev/tether/runtime/stdio"
)

// refundWorld runs sdk/python/examples/refund_agent.py with its ledger (the
// outside world: model calls and refunds) and hold files in a temp dir.
// With spawn, every owner's agent runs on a Spawner of its own, as in an
// Agent with spec.agentContainer (the runtime in one container, the agent
// program in another).
type refundWorld struct {
	ledger, hold string
	spawn        bool
}

func newRefundWorld(t *testing.T) *refundWorld {
	dir := t.TempDir()
	return &refundWorld{ledger: filepath.Join(dir, "ledger"), hold: filepath.Join(dir, "hold")}
}

func (w *refundWorld) agent(t *testing.T) *stdio.Handler {
	t.Helper()
	if !w.spawn {
		s := w.spawner(t)
		return &stdio.Handler{Command: s.Command, Args: s.Args, Env: s.Env}
	}
	return &stdio.Handler{Spawner: stdio.ServeSpawner(t, w.spawner(t))}
}

// spawner is a Spawner of the refund example with the world's files.
func (w *refundWorld) spawner(t *testing.T) *stdio.Spawner {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 runs the Python SDK's example agent; it is part of the machine image")
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "sdk", "python", "examples", "refund_agent.py")
	return &stdio.Spawner{Command: python, Args: []string{script}, Env: []string{"TETHER_EXAMPLE_LEDGER=" + w.ledger, "TETHER_EXAMPLE_HOLD=" + w.hold}}
}

// lines is what the outside world saw.
func (w *refundWorld) lines(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(w.ledger)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(data), " ", "|"))
}

func submit(t *testing.T, c *conversation.Conversation, f protocol.ClientFrame) {
	t.Helper()
	if _, err := c.Submit(context.Background(), f); err != nil {
		t.Fatalf("submit %+v: %v", f, err)
	}
}

func logLines(t *testing.T, log eventlog.Log, key eventlog.Key) []string {
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
		case protocol.EventStep:
			var s protocol.StepData
			_ = json.Unmarshal(e.Data, &s)
			line += ":" + s.Name + "=" + string(s.Result)
		}
		out = append(out, line)
	}
	return out
}

func waitLog(t *testing.T, log eventlog.Log, key eventlog.Key, what string) []string {
	t.Helper()
	var lines []string
	await.Until(t, 10*time.Second, fmt.Sprintf("%q in the log", what), func() bool {
		lines = logLines(t, log, key)
		return strings.Contains(strings.Join(lines, "\n"), what)
	})
	return lines
}

// forEachStore runs a scenario on each store: memory, the kubernetes store
// on a real API server, and a real Redis.
func forEachStore(t *testing.T, prefix string, scenario func(*testing.T, eventlog.Log, eventlog.Key)) {
	t.Run("memory", func(t *testing.T) { scenario(t, memory.New(), eventlogtest.NewKey(prefix)) })
	t.Run("kubernetes", func(t *testing.T) {
		env := testenv.Start(t)
		key := eventlogtest.NewKey(prefix)
		if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: key.Namespace}}); err != nil {
			t.Fatal(err)
		}
		scenario(t, kubelog.New(env.Client), key)
	})
	t.Run("redis", func(t *testing.T) {
		log, err := redislog.New(redislog.Options{Addrs: []string{testredis.Start(t).Addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = log.Close() })
		scenario(t, log, eventlogtest.NewKey(prefix))
	})
}

// proposed is the amount the recorded propose step holds.
func proposed(t *testing.T, lines []string) string {
	t.Helper()
	for _, l := range lines {
		if amount, ok := strings.CutPrefix(l, "step:propose="); ok {
			return amount
		}
	}
	t.Fatalf("no propose step in %q", lines)
	return ""
}

// TestPythonRefundAfterTheAnswer: the Python agent's owner is lost after
// the human approved, while the refund runs. The new owner's process does
// not call the model again (the ledger says one call), replays the recorded
// proposal and answer, and refunds exactly the approved amount, once.
func TestPythonRefundAfterTheAnswer(t *testing.T) {
	forEachStore(t, "py-refund-after", func(t *testing.T, log eventlog.Log, key eventlog.Key) {
		pythonRefundAfterTheAnswer(t, log, key, newRefundWorld(t))
	})
}

// TestPythonRefundThroughTheSpawner: the same with each owner's agent
// program started by a Spawner, the runtime talking to it over a socket.
func TestPythonRefundThroughTheSpawner(t *testing.T) {
	w := newRefundWorld(t)
	w.spawn = true
	pythonRefundAfterTheAnswer(t, memory.New(), eventlogtest.NewKey("py-refund-spawned"), w)
}

func pythonRefundAfterTheAnswer(t *testing.T, log eventlog.Log, key eventlog.Key, w *refundWorld) {
	a, stA := start(t, log, key, 1, w.agent(t))
	submit(t, a, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-1", Text: "refund order 1234"})
	asked := waitPhase(t, stA, tetherv1alpha1.PhaseAwaitingInput)
	if err := os.WriteFile(w.hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	submit(t, a, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-1", PromptID: "refund", PromptSeq: asked.PromptSeq, Text: "approve"})
	waitLog(t, log, key, "answer")
	a.Stop(errors.New("the pod is gone"), protocol.CloseNotOwner)
	if err := os.Remove(w.hold); err != nil {
		t.Fatal(err)
	}

	start(t, log, key, 2, w.agent(t))
	lines := waitLog(t, log, key, "turn_finished")
	amount := proposed(t, lines)
	want := []string{"user_message", "step:propose=" + amount, "assistant_message:I propose refunding " + amount + " EUR", "prompt", "answer",
		"step_started", `step:refund={"refunded":` + amount + `}`, "assistant_message:approved: refunded " + amount + " EUR", "turn_finished"}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Fatalf("log\n%q\nwant\n%q", lines, want)
	}
	world := w.lines(t)
	if len(world) != 2 || world[0] != "propose" || !strings.HasPrefix(world[1], "refund|") || !strings.HasSuffix(world[1], "|"+amount) {
		t.Fatalf("the world saw %q: want one model call and one refund of %s EUR", world, amount)
	}
}

// TestAgentContainerRestartRunsTheTurnAgain: the agent's container (its
// spawner) stops while the approved refund runs, and starts again, as when
// the kubelet restarts it or the pod is deleted with the runtime still up.
// The agent did not fail: the conversation does not fail either; the turn
// runs again in a new process, replays the proposal and the answer, and
// refunds the approved amount once.
func TestAgentContainerRestartRunsTheTurnAgain(t *testing.T) {
	w := newRefundWorld(t)
	socket := filepath.Join(t.TempDir(), "agent.sock")
	stop := stdio.ServeSpawnerAt(t, w.spawner(t), socket)
	log, key := memory.New(), eventlogtest.NewKey("py-container-restart")
	c, st := start(t, log, key, 1, &stdio.Handler{Spawner: socket})
	submit(t, c, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-1", Text: "refund order 9"})
	asked := waitPhase(t, st, tetherv1alpha1.PhaseAwaitingInput)
	if err := os.WriteFile(w.hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	submit(t, c, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-1", PromptID: "refund", PromptSeq: asked.PromptSeq, Text: "approve"})
	waitLog(t, log, key, "step_started")

	stop() // the container stops: the spawner and its programs with it
	stdio.ServeSpawnerAt(t, w.spawner(t), socket)
	if err := os.Remove(w.hold); err != nil {
		t.Fatal(err)
	}
	lines := waitLog(t, log, key, "turn_finished")
	amount := proposed(t, lines)
	want := []string{"user_message", "step:propose=" + amount, "assistant_message:I propose refunding " + amount + " EUR", "prompt", "answer",
		"step_started", `step:refund={"refunded":` + amount + `}`, "assistant_message:approved: refunded " + amount + " EUR", "turn_finished"}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Fatalf("log\n%q\nwant\n%q", lines, want)
	}
	world := w.lines(t)
	if len(world) != 2 || world[0] != "propose" || !strings.HasSuffix(world[1], "|"+amount) {
		t.Fatalf("the world saw %q: want one model call and one refund of %s EUR", world, amount)
	}
}

// TestPythonRefundBeforeTheAnswer: the owner is lost while the question
// waits; the new owner's process asks the identical question (the same
// seq), it is answered once, and the approved amount is refunded once.
func TestPythonRefundBeforeTheAnswer(t *testing.T) {
	forEachStore(t, "py-refund-before", pythonRefundBeforeTheAnswer)
}

func pythonRefundBeforeTheAnswer(t *testing.T, log eventlog.Log, key eventlog.Key) {
	w := newRefundWorld(t)
	a, stA := start(t, log, key, 1, w.agent(t))
	submit(t, a, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-1", Text: "refund order 1234"})
	first := waitPhase(t, stA, tetherv1alpha1.PhaseAwaitingInput)
	a.Stop(errors.New("the pod is gone"), protocol.CloseNotOwner)

	b, stB := start(t, log, key, 2, w.agent(t))
	again := waitPhase(t, stB, tetherv1alpha1.PhaseAwaitingInput)
	if again.Prompt.Text != first.Prompt.Text || again.PromptSeq != first.PromptSeq {
		t.Fatalf("B asks %q at %d, A asked %q at %d", again.Prompt.Text, again.PromptSeq, first.Prompt.Text, first.PromptSeq)
	}
	submit(t, b, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-1", PromptID: "refund", PromptSeq: again.PromptSeq, Text: "approve"})
	lines := waitLog(t, log, key, "turn_finished")
	amount := proposed(t, lines)
	if got := strings.Count(strings.Join(lines, " "), "answer"); got != 1 || !strings.Contains(strings.Join(lines, "\n"), "approved: refunded "+amount+" EUR") {
		t.Fatalf("log %q: want one answer and the refund of %s EUR", lines, amount)
	}
	if world := w.lines(t); len(world) != 2 || world[0] != "propose" {
		t.Fatalf("the world saw %q: want one model call and one refund", world)
	}
}

// TestPythonAgentRemembersAcrossMoves: a three-turn conversation with the
// Python agent, moved between turns and in the middle of one: after each
// move the new process knows the earlier turns (its reply quotes the first
// message, which only the first turn said).
func TestPythonAgentRemembersAcrossMoves(t *testing.T) {
	w := newRefundWorld(t)
	log, key := memory.New(), eventlogtest.NewKey("py-memory")
	a, _ := start(t, log, key, 1, w.agent(t))
	submit(t, a, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-1", Text: "my name is Ada"})
	waitLog(t, log, key, "your first message was 'my name is Ada'")

	// Moved between turns.
	a.Stop(errors.New("the pod is gone"), protocol.CloseNotOwner)
	b, stB := start(t, log, key, 2, w.agent(t))
	submit(t, b, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-2", Text: "who am I?"})
	waitLog(t, log, key, "you said 'who am I?'; your first message was 'my name is Ada'")

	// Moved in the middle of a turn.
	submit(t, b, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-3", Text: "refund order 77"})
	waitPhase(t, stB, tetherv1alpha1.PhaseAwaitingInput)
	b.Stop(errors.New("the pod is gone"), protocol.CloseNotOwner)
	c, stC := start(t, log, key, 3, w.agent(t))
	asked := waitPhase(t, stC, tetherv1alpha1.PhaseAwaitingInput)
	submit(t, c, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-1", PromptID: "refund", PromptSeq: asked.PromptSeq, Text: "reject"})
	waitLog(t, log, key, "rejected: nothing refunded")
	submit(t, c, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-4", Text: "thanks"})
	lines := waitLog(t, log, key, "you said 'thanks'; your first message was 'my name is Ada'")
	if n := strings.Count(strings.Join(lines, "\n"), "step:propose"); n != 1 {
		t.Fatalf("%d proposals recorded: %q", n, lines)
	}
	if world := w.lines(t); len(world) != 1 {
		t.Fatalf("the world saw %q: one model call, no refund", world)
	}
}

// TestPythonReview: the Python SDK puts a tool call before a human
// (turn.review); the human edits its arguments; the agent gets the edit.
func TestPythonReview(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 runs the Python SDK; it is part of the machine image")
	}
	_, file, _, _ := runtime.Caller(0)
	sdk := filepath.Join(filepath.Dir(file), "..", "..", "sdk", "python")
	script := filepath.Join(t.TempDir(), "review.py")
	if err := os.WriteFile(script, []byte(`import json, sys
sys.path.insert(0, sys.argv[1])
import tether_agent

def handle(turn):
    d = turn.review("call", "Run this refund?", "refund", {"amount": 150}, "Refund **150 EUR**", ["accept", "edit"])
    turn.send(d["decision"] + " " + json.dumps(d["args"], sort_keys=True))

tether_agent.run(handle)
`), 0o600); err != nil {
		t.Fatal(err)
	}
	log, key := memory.New(), eventlogtest.NewKey("py-review")
	c, st := start(t, log, key, 1, &stdio.Handler{Command: python, Args: []string{script, sdk}})
	submit(t, c, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-1", Text: "refund"})
	asked := waitPhase(t, st, tetherv1alpha1.PhaseAwaitingInput)
	submit(t, c, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "d-1", PromptID: "call", PromptSeq: asked.PromptSeq,
		Decision: protocol.DecisionEdit, Args: json.RawMessage(`{"amount":120}`)})
	waitLog(t, log, key, `assistant_message:edit {"amount": 120}`)
}

// TestAStoreFailureUnderAPythonTurnRunsItAgain: the store failing while the
// Python agent's question is recorded (an API server restarting) does not
// fail the conversation. The process that was in the middle of the turn is
// let go of and the turn runs again in a fresh one; the process kept would
// have read the next turn's line as its answer and crashed (the 1,004-fault
// chaos run lost a refund conversation so).
func TestAStoreFailureUnderAPythonTurnRunsItAgain(t *testing.T) {
	w := newRefundWorld(t)
	log := &eventlogtest.FailingOnce{Log: memory.New(), Type: protocol.EventPrompt}
	key := eventlogtest.NewKey("py-store-failure")
	c, st := start(t, log, key, 1, w.agent(t))
	submit(t, c, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-1", Text: "refund order 1"})
	s := waitPhase(t, st, tetherv1alpha1.PhaseAwaitingInput)
	if s.Prompt == nil || s.Prompt.ID != "refund" {
		t.Fatalf("status %+v", s)
	}
	submit(t, c, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-1", PromptID: "refund", Text: "approve"})
	waitLog(t, log, key, "turn_finished")
	if got := types(t, log, key); strings.Contains(got, "failed") {
		t.Fatalf("log %s", got)
	}
	var proposals, refunds int
	for _, l := range w.lines(t) {
		switch {
		case l == "propose":
			proposals++
		case strings.HasPrefix(l, "refund"):
			refunds++
		}
	}
	if proposals != 1 || refunds != 1 {
		t.Fatalf("the world saw %q: want one proposal (the turn run again replays it) and one refund", w.lines(t))
	}
}
