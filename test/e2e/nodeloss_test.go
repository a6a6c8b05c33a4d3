package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"tether.dev/tether/internal/testing/apiaudit"
	"tether.dev/tether/internal/testing/await"
)

// node2 is the local cluster's second node (hack/cluster/node2.sh), the
// worker node the tests lose; the first holds the API server, the manager,
// the gateway and the Ingress.
const node2 = "tether-node2"

// TestNodeLost: the node that holds a conversation's owner pod is cut off
// (its only link down) while the client waits on the prompt. A pod on the
// other node owns the conversation within the Lease plus a second, the
// client's socket gets the prompt again, and the answer is applied once.
// When the node comes back, its pod owns nothing and, as the API server's
// audit log shows, got no write of the conversation accepted after the cut.
func TestNodeLost(t *testing.T) {
	c := need(t)
	if out, _ := c.run("kubectl", "get", "node", node2, "-o", "name"); out != "node/"+node2 {
		t.Skip("one node: make e2e brings up two (E2E_NODES=2)")
	}
	eventually(t, 120*time.Second, "an approvals pod Ready on each node", func() bool {
		out, _ := c.run("kubectl", "get", "pods", "-l", "tether.dev/agent=approvals",
			"-o", `jsonpath={range .items[?(@.status.containerStatuses[0].ready==true)]}{.spec.nodeName}{" "}{end}`)
		nodes := strings.Fields(out)
		return slices.Contains(nodes, node2) && slices.Contains(nodes, "tether-node")
	})
	// Placement goes to the least loaded pod: a few conversations give one
	// owned on the second node.
	var name, owner string
	for range 8 {
		n := c.conversation(t, "nodeloss")
		o := c.field(t, n, ".status.owner.name")
		if node, _ := c.run("kubectl", "get", "pod", o, "-o", "jsonpath={.spec.nodeName}"); node == node2 {
			name, owner = n, o
			break
		}
	}
	if name == "" {
		t.Fatal("no conversation was placed on the second node")
	}
	epoch := c.field(t, name, ".status.lease.epoch")
	r := c.connect(t, name)
	first, _ := r.wait(t, "the prompt", 1, isPrompt)

	cut := time.Now()
	c.cluster(t, "partition", "node2")
	// Requests that reached the API server before the link went down were
	// the owner's, rightly: judge from when it is down.
	down := time.Now()
	healed := false
	t.Cleanup(func() {
		if !healed {
			c.cluster(t, "heal", "node2")
		}
	})
	var ownedAt time.Time
	var newOwner string
	eventually(t, 30*time.Second, "a new owner on the first node", func() bool {
		out, _ := c.run("kubectl", "get", "conversation", name, "-o", "jsonpath={.status.owner.name}/{.status.lease.epoch}")
		o, e, _ := strings.Cut(out, "/")
		if o == "" || o == owner || e == epoch {
			return false
		}
		ownedAt, newOwner = time.Now(), o
		return true
	})
	again, promptAt := r.wait(t, "the prompt from the new owner", 2, isPrompt)
	lease := 4 * time.Second
	t.Logf("node lost: owned again by %s after %s, the client had its prompt again after %s",
		newOwner, ownedAt.Sub(cut).Round(time.Millisecond), promptAt.Sub(cut).Round(time.Millisecond))
	report(t, "node lost (partitioned), owned again", []time.Duration{ownedAt.Sub(cut)})
	report(t, "node lost (partitioned), prompt again", []time.Duration{promptAt.Sub(cut)})
	if node := c.kubectl(t, "get", "pod", newOwner, "-o", "jsonpath={.spec.nodeName}"); node == node2 {
		t.Fatalf("the new owner %s is on the lost node", newOwner)
	}
	if took := ownedAt.Sub(cut); took > lease+time.Second {
		t.Errorf("owned again %s after the node was cut; the Lease is %s: want at most %s", took, lease, lease+time.Second)
	}
	if again.Prompt.ID != first.Prompt.ID || again.Seq != first.Seq {
		t.Fatalf("prompt %+v after the move, %+v before", again.Prompt, first.Prompt)
	}
	r.finish(t, again.Prompt.ID)

	// The node comes back: its pod runs again, and must write nothing of
	// what it lost.
	c.cluster(t, "heal", "node2")
	healed = true
	eventually(t, 60*time.Second, "the old owner's runtime back (its pod Lease renewed)", func() bool {
		out, _ := c.run("kubectl", "get", "lease", "-n", "default", owner, "-o", "jsonpath={.spec.renewTime}")
		at, err := time.Parse(time.RFC3339Nano, out)
		return err == nil && at.After(cut)
	})
	// A finished conversation keeps the name of its last owner; one still
	// going must not be the old pod's.
	await.StaysEvery(t, 2*lease, 500*time.Millisecond, "no live conversation owned by the old pod", func() bool {
		out, _ := c.run("kubectl", "get", "conversations", "-o", "jsonpath={range .items[*]}{.status.phase}/{.status.owner.name}{\" \"}{end}")
		for _, f := range strings.Fields(out) {
			phase, o, _ := strings.Cut(f, "/")
			if o == owner && phase != "Succeeded" && phase != "Failed" {
				return false
			}
		}
		return true
	})
	entries, err := apiaudit.Read(c.Audit)
	if err != nil {
		t.Fatal(err)
	}
	var after int
	for _, e := range entries {
		conv := e.ObjectRef.Name
		if e.ObjectRef.Resource == "conversationlogchunks" {
			conv, _, _ = strings.Cut(conv, ".")
		}
		if e.Pod() == owner && conv == name && e.Accepted() && e.RequestReceived.After(down) {
			t.Errorf("accepted after the cut: %s %s/%s by %s at %s", e.Verb, e.ObjectRef.Resource, e.ObjectRef.Name, owner, e.Completed)
		}
		if e.Pod() == owner && e.RequestReceived.After(down) {
			after++
		}
	}
	v := apiaudit.Judge(entries, "default", apiaudit.RuntimeIn("default"))
	for _, f := range v.Stale {
		t.Errorf("stale write accepted: %s", f)
	}
	t.Logf("audit: %d requests by %s after the cut, none of them an accepted write of %s; %d runtime writes judged (%v), %d late, 0 stale",
		after, owner, name, v.Writes["status"]+v.Writes["log"]+v.Writes["chunk"], v.Writes, v.Late["log"]+v.Late["chunk"])
}

// cluster runs hack/cluster/cluster.sh with args.
func (c *cluster) cluster(t *testing.T, args ...string) {
	t.Helper()
	if err := c.Script(args...); err != nil {
		t.Fatal(err)
	}
}
