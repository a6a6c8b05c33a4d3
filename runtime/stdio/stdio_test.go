package stdio_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
	"tether.dev/tether/runtime/stdio"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pythonApproval is the example agent in examples/agents, run with python3.
func pythonApproval(t *testing.T) *stdio.Handler {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 runs the example agent that is not written in Go; it is part of the machine image")
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "examples", "agents", "approval.py")
	return &stdio.Handler{Command: python, Args: []string{script}}
}

type statuses struct {
	mu   sync.Mutex
	last conversation.Status
}

func (s *statuses) publish(_ context.Context, st conversation.Status) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = st
	return nil
}

func (s *statuses) get() conversation.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func start(t *testing.T, log eventlog.Log, key eventlog.Key, epoch int64, h conversation.Handler) (*conversation.Conversation, *statuses) {
	t.Helper()
	st := &statuses{}
	c, err := conversation.Start(context.Background(), conversation.Config{Key: key, Epoch: epoch, Log: log, Handler: h, Status: st.publish})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(nil, protocol.CloseGoingAway) })
	return c, st
}

func waitPhase(t *testing.T, st *statuses, phase tetherv1alpha1.ConversationPhase) conversation.Status {
	t.Helper()
	await.Until(t, 10*time.Second, "phase "+string(phase), func() bool { return st.get().Phase == phase })
	return st.get()
}

func types(t *testing.T, log eventlog.Log, key eventlog.Key) string {
	t.Helper()
	events, err := log.Read(context.Background(), key, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		out = append(out, e.Type)
	}
	return fmt.Sprint(out)
}

func TestPythonAgentAsksAndFinishes(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("python")
	c, st := start(t, log, key, 1, pythonApproval(t))
	ctx := context.Background()
	if _, err := c.Submit(ctx, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-1", Text: "refund order 1234"}); err != nil {
		t.Fatal(err)
	}
	s := waitPhase(t, st, tetherv1alpha1.PhaseAwaitingInput)
	if s.Prompt.ID != "approve-1" || s.Prompt.Text != "Approve: refund order 1234?" {
		t.Fatalf("prompt %+v", s.Prompt)
	}
	if _, err := c.Submit(ctx, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-1", PromptID: "approve-1", Text: "reject"}); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, st, tetherv1alpha1.PhaseSucceeded)
	if got := types(t, log, key); got != "[user_message assistant_message prompt answer assistant_message finished]" {
		t.Fatalf("log %s", got)
	}
}

// TestPythonAgentTakeover: a new owner starts a new process, replays the
// turn against the recorded events and presents the same prompt, without
// recording anything twice.
func TestPythonAgentTakeover(t *testing.T) {
	log := memory.New()
	key := eventlogtest.NewKey("python-takeover")
	a, stA := start(t, log, key, 1, pythonApproval(t))
	ctx := context.Background()
	if _, err := a.Submit(ctx, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-1", Text: "refund order 1234"}); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, stA, tetherv1alpha1.PhaseAwaitingInput)
	b, stB := start(t, log, key, 2, pythonApproval(t))
	if s := waitPhase(t, stB, tetherv1alpha1.PhaseAwaitingInput); s.Prompt.ID != "approve-1" {
		t.Fatalf("B presents %+v", s.Prompt)
	}
	if _, err := b.Submit(ctx, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-1", PromptID: "approve-1", Text: "approve"}); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, stB, tetherv1alpha1.PhaseSucceeded)
	if got := types(t, log, key); got != "[user_message assistant_message prompt answer assistant_message finished]" {
		t.Fatalf("log %s", got)
	}
}

func TestBrokenAgentsFailTheirConversationOnly(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, script, want string
	}{
		{"garbage", `read line; echo 'this is not json'; read more`, "the agent wrote a line that is not JSON"},
		{"unknown line", `read line; echo '{"type":"reformat_disk"}'; read more`, "unknown line type"},
		{"crash", `read line; echo 'segfault' >&2; exit 3`, "the agent process exited (exit status 3); its last error output: segfault"},
		{"reported failure", `read line; echo '{"type":"fail","message":"model quota exceeded"}'; read more`, "the agent reported: model quota exceeded"},
		// Output over a limit downstream (the event log, the gateway's read
		// limit) fails the turn here, saying which limit, instead of
		// breaking every socket on the conversation.
		{"a delta over its limit", `read line; printf '{"type":"delta","text":"%s"}\n' "$(head -c 20000 /dev/zero | tr '\0' x)"; read more`,
			"a delta of 20002 bytes as JSON; the limit is 16384"},
		{"a message that escapes over its limit", `read line; printf '{"type":"send","text":"%s"}\n' "$(head -c 16000 /dev/zero | tr '\0' '<')"; read more`,
			"a message of 96002 bytes as JSON; the limit is 61440"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := memory.New()
			c, st := start(t, log, eventlogtest.NewKey("broken"), 1, &stdio.Handler{Command: sh, Args: []string{"-c", tc.script}})
			if _, err := c.Submit(context.Background(), protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-1", Text: "hello"}); err != nil {
				t.Fatal(err)
			}
			s := waitPhase(t, st, tetherv1alpha1.PhaseFailed)
			if !strings.Contains(s.Message, tc.want) {
				t.Fatalf("message %q lacks %q", s.Message, tc.want)
			}
		})
	}
}
