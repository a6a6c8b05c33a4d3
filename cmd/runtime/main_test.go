package main_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testenv"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/runtime/conversation"
)

// TestRuntimeBinaryShutdown builds cmd/runtime and runs it for a pod that
// holds 100 conversations awaiting a human. On SIGTERM it lets go of all of
// them within one stop-wait and exits cleanly, and its Lease is already
// gone (released, not left to expire) when the process has exited, so the
// controller moves the conversations at once.
func TestRuntimeBinaryShutdown(t *testing.T) {
	env := testenv.Start(t)
	stopControllers, err := testworker.RunControllers(env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stopControllers() })
	ctx := context.Background()
	dir := t.TempDir()
	kubeconfig, err := env.Kubeconfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "runtime")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the runtime: %v\n%s", err, out)
	}
	const ns, ip = "default", "127.0.31.1"
	port := testworker.FreePort(t)
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvals"},
		Spec: tetherv1alpha1.AgentSpec{
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: "approvals"}},
			ConversationsPerPod: 100, LeaseDurationSeconds: 10, RuntimePort: int32(port), //nolint:gosec // a port from the kernel
		},
	}
	if err := env.Client.Create(ctx, agent); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvals-a", Labels: map[string]string{tetherv1alpha1.AgentLabel: "approvals"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime:test"}}},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}

	probe := freeAddr(t)
	cmd := exec.CommandContext(ctx, bin, "--agent=approval", "--gateway-identity="+testworker.GatewayIdentity, "--health-probe-bind-address="+probe) //nolint:gosec // the binary this test built
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig,
		"TETHER_POD_NAME="+pod.Name, "TETHER_POD_NAMESPACE="+ns, "TETHER_POD_UID="+string(pod.UID), "TETHER_POD_IP="+ip,
		"TETHER_AGENT=approvals", "TETHER_LEASE_DURATION_SECONDS=10", fmt.Sprintf("TETHER_RUNTIME_PORT=%d", port))
	logs, err := os.Create(filepath.Join(dir, "runtime.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var exitedAt atomic.Int64
	go func() {
		err := cmd.Wait()
		exitedAt.Store(time.Now().UnixNano())
		exited <- err
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			if err := <-exited; err != nil {
				t.Logf("the runtime, killed: %v", err)
			}
		}
		if t.Failed() {
			out, _ := os.ReadFile(logs.Name())
			t.Logf("runtime log:\n%s", out)
		}
	}()

	const n = 100
	for i := range n {
		conv := &tetherv1alpha1.Conversation{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("c-%d", i)},
			Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
				Subjects: []string{"alice"}, InitialInput: fmt.Sprintf("refund order %d", i)},
		}
		if err := env.Client.Create(ctx, conv); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, fmt.Sprintf("%d conversations awaiting input on the runtime", n), 60*time.Second, func() bool {
		var list tetherv1alpha1.ConversationList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false
		}
		awaiting := 0
		for _, c := range list.Items {
			if c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput && c.Status.Owner != nil && c.Status.Owner.Name == pod.Name {
				awaiting++
			}
		}
		return awaiting == n
	})

	lease := client.ObjectKey{Namespace: ns, Name: pod.Name}
	if err := env.Client.Get(ctx, lease, &coordinationv1.Lease{}); err != nil {
		t.Fatalf("the runtime's Lease before SIGTERM: %v", err)
	}
	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the runtime exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the runtime did not exit within 30 s of SIGTERM")
	}
	took := time.Unix(0, exitedAt.Load()).Sub(signalled)
	// Checked after the exit: the Lease was deleted by the runtime, before
	// it exited; no one else deletes it (its pod still exists).
	if err := env.Client.Get(ctx, lease, &coordinationv1.Lease{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the runtime exited and its Lease is still there (%v): its conversations would wait for it to expire", err)
	}
	if took > conversation.StopWait {
		t.Fatalf("the runtime took %s to stop with %d conversations, more than one stop-wait (%s)", took, n, conversation.StopWait)
	}
	t.Logf("SIGTERM with %d conversations: exited after %s, Lease released", n, took.Round(time.Millisecond))
	// The controller moves them at once, not after 10 s.
	waitFor(t, "every conversation taken off the stopped pod", 5*time.Second, func() bool {
		var list tetherv1alpha1.ConversationList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false
		}
		for _, c := range list.Items {
			if c.Status.Owner != nil && c.Status.Owner.Name == pod.Name {
				return false
			}
		}
		return true
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	await.Until(t, timeout, what, cond)
}
