package gateway_test

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/util/retry"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/gateway"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
)

// TestGatewayDialsOnlyTheOwnerPod: whoever can write a Conversation's status
// points its owner at a listener of their own. The gateway never dials it,
// so neither the client's socket nor the gateway's upstream token reaches
// it: the client is held until the hold timeout.
func TestGatewayDialsOnlyTheOwnerPod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{})

	// The trap: what an attacker listens with, counting whoever comes.
	var dialed atomic.Int64
	trapAddr := "127.0.22.9"
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", net.JoinHostPort(trapAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	trap := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dialed.Add(1)
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the gateway's upstream token reached the trap")
		}
		http.Error(w, "gotcha", http.StatusTeapot)
	})}
	go func() { _ = trap.Serve(l) }()
	t.Cleanup(func() { _ = trap.Close() })
	trapPort := l.Addr().(*net.TCPAddr).Port

	// The real owner: a worker of the Agent, at another address.
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.22.1", Port: port})
	key := createConversation(t, ns, "pointed")
	testworker.WaitConversation(t, env.Client, key, "AwaitingInput", awaiting("approvals-a"))

	// The attack: the status keeps the owner's name and UID and names the
	// trap's address.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		conv := &tetherv1alpha1.Conversation{}
		if err := env.Client.Get(ctx, key, conv); err != nil {
			return err
		}
		conv.Status.Owner.IP, conv.Status.Owner.Port = trapAddr, int32(trapPort) //nolint:gosec // a port from the kernel
		return env.Client.Status().Update(ctx, conv)
	}); err != nil {
		t.Fatal(err)
	}

	g := startGateway(t, func(c *gateway.Config) { c.HoldTimeout = 1500 * time.Millisecond })
	ws, _, err := dialRaw(t, g.url(ns, key.Name), bearer(token(t, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, ws); code != protocol.CloseHoldTimeout {
		t.Fatalf("close %d, want %d (held, never routed)", code, protocol.CloseHoldTimeout)
	}
	if n := dialed.Load(); n != 0 {
		t.Fatalf("the gateway dialed the address the status named %d times", n)
	}
	conv := &tetherv1alpha1.Conversation{}
	if err := env.Client.Get(ctx, key, conv); err != nil || conv.Status.Owner.IP != trapAddr {
		t.Fatalf("the status no longer names the trap (%v): the test proved nothing", err)
	}
}
