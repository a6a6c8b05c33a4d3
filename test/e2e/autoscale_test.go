package e2e

import (
	"strings"
	"testing"
	"time"

	"tether.dev/tether/protocol"
)

// elasticAgent sizes itself to its load: two conversations a pod, no
// free slot kept, one to three pods.
const elasticAgent = `apiVersion: tether.dev/v1alpha1
kind: Agent
metadata: {name: elastic, namespace: default}
spec:
  conversationsPerPod: 2
  autoscaling: {minReplicas: 1, maxReplicas: 3, freeSlots: 0}
  leaseDurationSeconds: 4
  runtimePort: 8080
  template:
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: runtime
          image: tether-runtime:0.1.0
          imagePullPolicy: Never
          args: [--agent=approval]
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`

// TestAgentScalesWithItsLoad: an autoscaled Agent grows a pod for a
// conversation that finds no slot, and when its load falls so that one pod
// would do, drains one of its two loaded pods before removing it: the
// conversation on it moves at its turn boundary (it waits on a human), its
// client sees a Rescheduling status frame and the prompt again on the same
// socket, with no error, and answers it once. kubectl get agents shows the
// pods following the load.
func TestAgentScalesWithItsLoad(t *testing.T) {
	c := need(t)
	c.apply(t, elasticAgent)
	t.Cleanup(func() { _, _ = c.run("kubectl", "delete", "agent", "elastic", "--wait=false") })
	ready := func(want string) {
		t.Helper()
		eventually(t, 120*time.Second, want+" ready elastic pods", func() bool {
			out, _ := c.run("kubectl", "get", "agent", "elastic", "-o", "jsonpath={.status.readyReplicas}")
			return out == want
		})
	}
	pods := func() []string {
		out, _ := c.run("kubectl", "get", "pods", "-l", "tether.dev/agent=elastic", "-o", "name")
		return strings.Fields(out)
	}
	ready("1")
	var names []string
	var clients []*recorder
	for i := range 4 { // the third finds no slot: a second pod comes
		names = append(names, c.conversationOf(t, "elastic", "elastic"))
		clients = append(clients, c.connect(t, names[i]))
		clients[i].wait(t, "the prompt", 1, isPrompt)
	}
	ready("2")
	t.Logf("four conversations:\n%s", c.kubectl(t, "get", "agents", "elastic"))
	owners := map[string]string{}
	for _, n := range names {
		owners[n] = c.field(t, n, ".status.owner.name")
	}
	// One conversation of each pod ends: one pod would do.
	ended := map[string]bool{}
	for i, n := range names {
		if !ended[owners[n]+"/done"] {
			ended[owners[n]+"/done"], ended[n] = true, true
			p, _ := clients[i].wait(t, "the prompt", 1, isPrompt)
			clients[i].finish(t, p.Prompt.ID)
		}
	}
	eventually(t, 90*time.Second, "one elastic pod left", func() bool { return len(pods()) == 1 })
	t.Logf("two conversations left:\n%s", c.kubectl(t, "get", "agents", "elastic"))
	left := pods()[0]
	moved := 0
	for i, n := range names {
		if ended[n] {
			continue
		}
		r := clients[i]
		if owners[n] == strings.TrimPrefix(left, "pod/") {
			p, _ := r.wait(t, "the prompt", 1, isPrompt)
			r.finish(t, p.Prompt.ID)
			continue
		}
		moved++
		r.wait(t, "a Rescheduling status frame", 1, func(f protocol.ServerFrame) bool {
			return f.Type == protocol.TypeStatus && f.Phase == "Rescheduling"
		})
		again, _ := r.wait(t, "the prompt again from the new owner", 2, isPrompt)
		if now := c.field(t, n, ".status.owner.name"); "pod/"+now != left {
			t.Fatalf("%s is owned by %s, not the pod left (%s)", n, now, left)
		}
		if count := c.field(t, n, ".status.rescheduleCount"); count != "" && count != "0" {
			t.Errorf("%s counted %s reschedules: a drain is a move, not a loss", n, count)
		}
		r.finish(t, again.Prompt.ID)
		if r.c.Binds() != 1 || r.c.Err() != nil {
			t.Errorf("%s: the client bound %d times (err %v); the gateway should have held its socket", n, r.c.Binds(), r.c.Err())
		}
		eventually(t, 10*time.Second, n+"'s Moved event", func() bool {
			out, _ := c.run("kubectl", "get", "events", "--field-selector", "involvedObject.name="+n+",reason=Moved", "-o", "name")
			return out != ""
		})
	}
	if moved != 1 {
		t.Fatalf("%d conversations moved off the drained pod, want 1", moved)
	}
}
