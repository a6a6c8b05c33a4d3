package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/protocol"
)

// TestBoundClientKeepsItAwake: through the Ingress, a client opening a
// Suspended conversation wakes it once; while the client is bound the
// conversation stays AwaitingInput with one owner (no wake and suspend
// loop), and the client gets one bind sequence; once it leaves, the
// conversation is suspended again after idleSuspendSeconds.
func TestBoundClientKeepsItAwake(t *testing.T) {
	c := need(t)
	seq++
	name := fmt.Sprintf("idle-%d-%d", time.Now().Unix()%100000, seq)
	c.apply(t, fmt.Sprintf(`apiVersion: tether.dev/v1alpha1
kind: Conversation
metadata: {name: %s, namespace: default}
spec:
  agentRef: {name: approvals}
  subjects: [alice]
  initialInput: refund order %s
  idleSuspendSeconds: 10
`, name, name))
	eventually(t, 60*time.Second, name+" Suspended", func() bool {
		out, _ := c.run("kubectl", "get", "conversation", name, "-o", "jsonpath={.status.phase}")
		return out == "Suspended"
	})
	epoch := func() int {
		n, err := strconv.Atoi(c.field(t, name, ".status.lease.epoch"))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	suspendedAt := epoch()

	bound := 60 * time.Second
	r := c.connect(t, name)
	r.wait(t, "the prompt after waking", 1, isPrompt)
	await.StaysEvery(t, bound, time.Second, "the bound conversation AwaitingInput", func() bool {
		return c.field(t, name, ".status.phase") == "AwaitingInput"
	})
	// One wake, one placement: one epoch more, whatever else happened.
	if e := epoch(); e != suspendedAt+1 {
		t.Fatalf("epoch went from %d to %d while one client was bound: want one placement", suspendedAt, e)
	}
	events := c.kubectl(t, "get", "events", "--field-selector", "involvedObject.name="+name, "-o", "jsonpath={range .items[*]}{.reason}={.count}{\" \"}{end}")
	reasons := map[string]int{}
	for _, e := range strings.Fields(events) {
		reason, count, _ := strings.Cut(e, "=")
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 {
			n = 1
		}
		reasons[reason] += n
	}
	if reasons["Woken"] != 1 || reasons["Suspended"] != 1 {
		t.Fatalf("events %v: want one Suspended (before the client) and one Woken", reasons)
	}
	binds, prompts := 0, 0
	for _, f := range r.Frames() {
		switch f.Type {
		case protocol.TypeReplayComplete:
			binds++
		case protocol.TypePendingPrompt:
			prompts++
		}
	}
	if binds != 1 || prompts != 1 || r.c.Binds() != 1 {
		t.Fatalf("%d replays and %d prompts on %d connections: want one bind sequence", binds, prompts, r.c.Binds())
	}
	t.Logf("bound %s: phase AwaitingInput, epoch %d -> %d, events %v", bound, suspendedAt, suspendedAt+1, reasons)

	_ = r.c.Close()
	left := time.Now()
	eventually(t, 60*time.Second, name+" Suspended again", func() bool {
		out, _ := c.run("kubectl", "get", "conversation", name, "-o", "jsonpath={.status.phase}")
		return out == "Suspended"
	})
	if after := time.Since(left); after < 9*time.Second {
		t.Fatalf("suspended %s after the client left, before idleSuspendSeconds (10 s)", after)
	}
}
