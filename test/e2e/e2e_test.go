// Package e2e runs Tether on the real local cluster (hack/cluster): the
// chart installed with helm, the approval Agent's pods in containerd,
// clients through nginx in front of the gateway Service. make e2e brings
// the cluster up and runs these tests inside its network namespace; outside
// it they skip.
package e2e

import (
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tether.dev/tether/internal/testing/await"
)

// TestKubectl: the Agent's pods run; kubectl get conversations shows phase,
// owner and prompt; kubectl scale agent changes the pool.
func TestKubectl(t *testing.T) {
	c := need(t)
	name := c.conversation(t, "kubectl")
	out := c.kubectl(t, "get", "conversation", name)
	for _, want := range []string{"PHASE", "OWNER", "PROMPT", "AwaitingInput", "Approve: refund order " + name + "?"} {
		if !strings.Contains(out, want) {
			t.Fatalf("kubectl get conversations lacks %q:\n%s", want, out)
		}
	}
	c.kubectl(t, "scale", "agent", "approvals", "--replicas=3")
	eventually(t, 60*time.Second, "3 ready pods", func() bool {
		out, _ := c.run("kubectl", "get", "agent", "approvals", "-o", "jsonpath={.status.readyReplicas}")
		return out == "3"
	})
	c.kubectl(t, "scale", "agent", "approvals", "--replicas=2")
	eventually(t, 60*time.Second, "2 pods", func() bool {
		out, _ := c.run("kubectl", "get", "pods", "-l", "tether.dev/agent=approvals", "-o", "name")
		return len(strings.Fields(out)) == 2
	})
}

// TestHumanInTheLoop: through the Ingress, the whole flow.
func TestHumanInTheLoop(t *testing.T) {
	c := need(t)
	name := c.conversation(t, "hitl")
	r := c.connect(t, name)
	p, _ := r.wait(t, "the prompt", 1, isPrompt)
	if p.Prompt.Text != "Approve: refund order "+name+"?" {
		t.Fatalf("prompt %+v", p.Prompt)
	}
	r.finish(t, p.Prompt.ID)
	if phase := c.field(t, name, ".status.phase"); phase != "Succeeded" {
		t.Fatalf("phase %s after the end", phase)
	}
}

// TestOwnerPodDeleted: the owner pod is deleted while the client waits on
// the prompt; the same socket gets the prompt again from the new owner;
// answered, completed, nothing lost or repeated. Measures the time from
// the deletion to the client holding the prompt again.
func TestOwnerPodDeleted(t *testing.T) {
	c := need(t)
	var took []time.Duration
	for range *runs {
		name := c.conversation(t, "delete")
		r := c.connect(t, name)
		first, _ := r.wait(t, "the prompt", 1, isPrompt)
		owner := c.field(t, name, ".status.owner.name")
		deleted := time.Now()
		c.kubectl(t, "delete", "pod", owner, "--wait=false")
		again, at := r.wait(t, "the prompt from the new owner", 2, isPrompt)
		took = append(took, at.Sub(deleted))
		if again.Prompt.ID != first.Prompt.ID || again.Seq != first.Seq {
			t.Fatalf("prompt %+v after the move, %+v before", again.Prompt, first.Prompt)
		}
		if now := c.field(t, name, ".status.owner.name"); now == owner {
			t.Fatalf("still owned by the deleted pod %s", owner)
		}
		r.finish(t, again.Prompt.ID)
		if r.c.Binds() != 1 {
			t.Errorf("the client connected %d times; the gateway should have held its socket", r.c.Binds())
		}
		waitPods(t, c, 2)
	}
	report(t, "owner pod deleted -> client holds the prompt again", took)
	if p99 := quantile(took, 0.99); p99 > time.Second {
		t.Errorf("p99 %s over the 1 s target", p99)
	}
}

// TestOwnerFrozen: the owner's runtime process is stopped (SIGSTOP) while
// its client waits on the prompt; once the Lease expires the conversation
// is owned again, and the gateway moves the client's socket to the new
// owner without waiting for the frozen one's socket to fail. Measures what
// the person sees: from the freeze to the client holding the prompt again.
// The thawed runtime writes nothing: the conversation stays with the new
// owner and its events stay exactly once each.
func TestOwnerFrozen(t *testing.T) {
	c := need(t)
	lease := 4 * time.Second // the Agent's leaseDurationSeconds (hack/e2e.sh)
	var took []time.Duration
	for range *runs {
		name := c.conversation(t, "freeze")
		r := c.connect(t, name)
		first, _ := r.wait(t, "the prompt", 1, isPrompt)
		owner := c.field(t, name, ".status.owner.name")
		epoch := c.field(t, name, ".status.lease.epoch")
		pid := runtimePID(t, c, owner)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		frozen := time.Now()
		thawed := false
		thaw := func() {
			if !thawed {
				thawed = true
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		t.Cleanup(thaw)
		again, at := r.wait(t, "the prompt from the new owner", 2, isPrompt)
		took = append(took, at.Sub(frozen))
		if again.Prompt.ID != first.Prompt.ID || again.Seq != first.Seq {
			t.Fatalf("prompt %+v after the move, %+v before", again.Prompt, first.Prompt)
		}
		if o := c.field(t, name, ".status.owner.name"); o == owner {
			t.Fatalf("the prompt came again while the frozen pod %s still owns the conversation", owner)
		}
		thaw()
		// The thawed runtime finds its Lease lost and its epoch stale.
		await.StaysEvery(t, 3*time.Second, 250*time.Millisecond, "the thawed pod "+owner+" not owning the conversation again", func() bool {
			return c.field(t, name, ".status.owner.name") != owner
		})
		if e := c.field(t, name, ".status.lease.epoch"); e == epoch {
			t.Fatalf("epoch still %s", e)
		}
		r.finish(t, again.Prompt.ID)
		if r.c.Binds() != 1 {
			t.Errorf("the client connected %d times; the gateway should have held its socket", r.c.Binds())
		}
		waitPods(t, c, 2)
	}
	report(t, "owner frozen -> client holds the prompt again (lease 4 s)", took)
	if p99 := quantile(took, 0.99); p99 > lease+time.Second {
		t.Errorf("p99 %s over the lease duration + 1 s", p99)
	}
}

// TestGatewayPodDeleted: the gateway pod holding the client's socket is
// deleted; the client reconnects through the Ingress to the other replica
// and resumes.
func TestGatewayPodDeleted(t *testing.T) {
	c := need(t)
	name := c.conversation(t, "gateway")
	r := c.connect(t, name)
	first, _ := r.wait(t, "the prompt", 1, isPrompt)
	serving := ""
	for _, line := range strings.Split(c.kubectl(t, "-n", "tether-system", "get", "pods", "-l", "app.kubernetes.io/name=tether-gateway",
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{"\n"}{end}`), "\n") {
		pod, ip, _ := strings.Cut(line, " ")
		out, err := exec.Command("curl", "-s", "http://"+ip+":8081/metrics").Output() //nolint:gosec,noctx // a pod of the test's cluster
		if err == nil && strings.Contains(string(out), "\ntether_gateway_connections 1\n") {
			serving = pod
		}
	}
	if serving == "" {
		t.Fatal("no gateway pod reports the client's socket")
	}
	c.kubectl(t, "-n", "tether-system", "delete", "pod", serving, "--wait=false")
	again, _ := r.wait(t, "the prompt through the other replica", 2, isPrompt)
	if again.Prompt.ID != first.Prompt.ID || r.c.Binds() != 2 {
		t.Fatalf("prompt %+v, %d binds", again.Prompt, r.c.Binds())
	}
	r.finish(t, again.Prompt.ID)
}

// TestHelmUpgradeKeepsConversations: a helm upgrade that rolls the
// manager and the gateway while a client waits on a prompt loses nothing.
func TestHelmUpgradeKeepsConversations(t *testing.T) {
	c := need(t)
	name := c.conversation(t, "upgrade")
	r := c.connect(t, name)
	r.wait(t, "the prompt", 1, isPrompt)
	// A value that differs from the installed one, so both Deployments roll.
	frames := 17
	if strings.Contains(c.kubectl(t, "-n", "tether-system", "get", "deployment", "tether-gateway", "-o", "jsonpath={.spec.template.spec.containers[0].args}"), "--hold-frames=17") {
		frames = 18
	}
	// The hop's TLS material the chart made is kept: runtimes and gateway
	// roll with the same CA and key pairs.
	tlsMaterial := func() string {
		return c.kubectl(t, "-n", "tether-system", "get", "secret", "tether-runtime-ca", "-o", "jsonpath={.data.tls\\.crt}") +
			c.kubectl(t, "get", "secret", "tether-runtime-tls", "-o", "jsonpath={.data.tls\\.crt}{.data.tls\\.key}")
	}
	before := tlsMaterial()
	out, err := c.run("helm", "upgrade", "tether", c.root+"/charts/tether", "-n", "tether-system", "--reuse-values",
		"--set", "gateway.holdFrames="+strconv.Itoa(frames), "--set", "manager.concurrency="+strconv.Itoa(frames-8), "--wait", "--timeout", "180s")
	if err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	if after := tlsMaterial(); after != before || len(before) < 100 {
		t.Fatalf("the upgrade changed the runtimes' CA or key pair (%d bytes before)", len(before))
	}
	again, _ := r.wait(t, "the prompt after the upgrade", 2, isPrompt)
	r.finish(t, again.Prompt.ID)
}

func waitPods(t *testing.T, c *cluster, n int) {
	t.Helper()
	eventually(t, 60*time.Second, strconv.Itoa(n)+" ready approvals pods", func() bool {
		out, _ := c.run("kubectl", "get", "agent", "approvals", "-o", "jsonpath={.status.readyReplicas}")
		return out == strconv.Itoa(n)
	})
}

// runtimePID is the host PID of the runtime process in pod.
func runtimePID(t *testing.T, c *cluster, pod string) int {
	t.Helper()
	pid, err := c.runtimePID(pod)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func (c *cluster) runtimePID(pod string) (int, error) { return c.ContainerPID("default", pod, 0) }
