package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"tether.dev/tether/protocol"
)

// pythonAgent runs the Python SDK's example in its own image: the image
// holds Debian's python3 and the SDK, nothing of Tether; the manager
// injects the runtime into the container spec.agentContainer names.
const pythonAgent = `apiVersion: tether.dev/v1alpha1
kind: Agent
metadata: {name: pyrefund, namespace: default}
spec:
  replicas: 2
  conversationsPerPod: 100
  leaseDurationSeconds: 4
  runtimePort: 8080
  agentContainer: agent
  template:
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: agent
          image: tether-python-agent:0.1.0
          imagePullPolicy: Never
          command: [/usr/bin/python3, /sdk/examples/refund_agent.py]
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`

// TestPythonAgentInItsOwnImage: a non-deterministic Python agent in an
// image without Tether's binary, through the Ingress. The human approves the
// proposed refund and the owner pod is deleted at once: the conversation
// finishes on another pod with the amount the human approved, proposed
// once, answered once, refunded once; the client sees every event once.
func TestPythonAgentInItsOwnImage(t *testing.T) {
	c := need(t)
	c.apply(t, pythonAgent)
	eventually(t, 120*time.Second, "2 ready Python agent pods", func() bool {
		out, _ := c.run("kubectl", "get", "agent", "pyrefund", "-o", "jsonpath={.status.readyReplicas}")
		return out == "2"
	})
	seq++
	name := fmt.Sprintf("py-%d-%d", time.Now().Unix()%100000, seq)
	c.apply(t, fmt.Sprintf("apiVersion: tether.dev/v1alpha1\nkind: Conversation\nmetadata: {name: %s, namespace: default}\n"+
		"spec: {agentRef: {name: pyrefund}, subjects: [alice], initialInput: refund order 42}\n", name))
	eventually(t, 60*time.Second, name+" AwaitingInput", func() bool {
		out, _ := c.run("kubectl", "get", "conversation", name, "-o", "jsonpath={.status.phase}")
		return out == "AwaitingInput"
	})
	r := c.connect(t, name)
	prompt, _ := r.wait(t, "the question", 1, isPrompt)
	owner := c.field(t, name, ".status.owner.name")
	id, err := r.c.Answer(prompt.Prompt.ID, "approve")
	if err != nil {
		t.Fatal(err)
	}
	r.wait(t, "the ack of the approval", 1, func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeAck && f.ID == id })
	c.kubectl(t, "delete", "pod", owner, "--wait=false")
	r.wait(t, "the refund", 1, func(f protocol.ServerFrame) bool {
		return f.Type == protocol.TypeEvent && f.Event == protocol.EventAssistantMessage && strings.Contains(string(f.Data), "approved: refunded")
	})
	r.wait(t, "the end of the turn", 1, func(f protocol.ServerFrame) bool {
		return f.Type == protocol.TypeEvent && f.Event == protocol.EventTurnFinished
	})

	var events []string
	seen := map[int64]bool{}
	for _, f := range r.Frames() {
		if f.Type != protocol.TypeEvent {
			continue
		}
		if seen[f.Seq] {
			t.Fatalf("event %d delivered twice", f.Seq)
		}
		seen[f.Seq] = true
		line := f.Event
		switch f.Event {
		case protocol.EventAssistantMessage:
			var d protocol.TextData
			_ = json.Unmarshal(f.Data, &d)
			line += ":" + d.Text
		case protocol.EventStep, protocol.EventStepStarted:
			line += ":" + string(f.Data)
		}
		events = append(events, line)
	}
	t.Logf("events: %q (owner %s deleted after the approval)", events, owner)
	var amount string
	for _, e := range events {
		if a, ok := strings.CutPrefix(e, "assistant_message:I propose refunding "); ok {
			amount = strings.TrimSuffix(a, " EUR")
		}
	}
	want := []string{"user_message", `step:{"name":"propose"}`, "assistant_message:I propose refunding " + amount + " EUR", "prompt", "answer",
		`step_started:{"name":"refund","summary":"refunding ` + amount + ` EUR"}`, `step:{"name":"refund","summary":"refunding ` + amount + ` EUR"}`,
		"assistant_message:approved: refunded " + amount + " EUR", "turn_finished"}
	if amount == "" || fmt.Sprint(events) != fmt.Sprint(want) {
		t.Fatalf("events\n%q\nwant\n%q", events, want)
	}
}
