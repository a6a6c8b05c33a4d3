package main_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testenv"
)

// TestManagerBinary builds cmd/manager and runs it against a real API
// server: it becomes leader, reports healthy and ready, and on SIGTERM exits
// cleanly and gives up the leadership at once.
func TestManagerBinary(t *testing.T) {
	env := testenv.Start(t)
	dir := t.TempDir()
	kubeconfig, err := env.Kubeconfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "manager")
	build := exec.CommandContext(context.Background(), "go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the manager: %v\n%s", err, out)
	}
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	probe := l.Addr().String()
	_ = l.Close()

	cmd := exec.CommandContext(context.Background(), bin, //nolint:gosec // the binary this test built
		"--leader-elect", "--leader-election-namespace=default",
		"--metrics-bind-address=0", "--health-probe-bind-address="+probe)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	logs, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			if err := <-exited; err != nil {
				t.Logf("the manager, killed: %v", err)
			}
		}
		if t.Failed() {
			out, _ := os.ReadFile(logs.Name())
			t.Logf("manager log:\n%s", out)
		}
	}()

	for _, path := range []string{"/healthz", "/readyz"} {
		waitFor(t, path+" answering 200", func() bool {
			resp, err := http.Get("http://" + probe + path) //nolint:noctx // a short poll
			if err != nil {
				return false
			}
			_ = resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	lease := &coordinationv1.Lease{}
	key := client.ObjectKey{Namespace: "default", Name: "tether-manager.tether.dev"}
	waitFor(t, "the leader-election Lease held", func() bool {
		return env.Client.Get(context.Background(), key, lease) == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != ""
	})
	// The Lease can be visible before the manager has read the answer to its
	// create; a SIGTERM in between cancels that request, and the manager,
	// never having known it led, has nothing to give up. Wait until it knows.
	waitFor(t, "the manager knowing it leads", func() bool {
		out, err := os.ReadFile(logs.Name())
		return err == nil && strings.Contains(strings.ToLower(string(out)), "successfully acquired lease")
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the manager exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the manager did not exit within 30 s of SIGTERM")
	}
	// Leadership is released on the way out, so a standby takes over at
	// once instead of waiting for the Lease to expire.
	if err := env.Client.Get(context.Background(), key, lease); err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("leadership still held by %q after a clean exit", *h)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	await.Until(t, 30*time.Second, what, cond)
}
