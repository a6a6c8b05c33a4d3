package gateway_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	tetherclient "tether.dev/tether/client"
	"tether.dev/tether/eventlog/redislog"
	"tether.dev/tether/gateway"
	"tether.dev/tether/internal/testing/framerec"
	"tether.dev/tether/internal/testing/testredis"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
)

// recorder keeps every frame a client delivered.
type recorder struct{ *framerec.Recorder }

func record(c *tetherclient.Client) *recorder { return &recorder{framerec.Record(c.Frames())} }

// wait waits for the n-th frame (counting from 1) satisfying want.
func (r *recorder) wait(t *testing.T, what string, n int, want func(protocol.ServerFrame) bool) protocol.ServerFrame {
	t.Helper()
	f, _ := r.Wait(t, 20*time.Second, what, n, want)
	return f
}

// events are the event frames delivered, in order.
func (r *recorder) events() []string {
	var out []string
	for _, f := range r.Frames() {
		if f.Type == protocol.TypeEvent {
			out = append(out, fmt.Sprintf("%d:%s", f.Seq, f.Event))
		}
	}
	return out
}

func isType(typ string) func(protocol.ServerFrame) bool {
	return func(f protocol.ServerFrame) bool { return f.Type == typ }
}

func isFinished(f protocol.ServerFrame) bool {
	return f.Type == protocol.TypeEvent && f.Event == protocol.EventFinished
}

// wantEvents checks the whole conversation was delivered once, in order.
func wantEvents(t *testing.T, r *recorder) {
	t.Helper()
	want := []string{"1:user_message", "2:assistant_message", "3:prompt", "4:answer", "5:assistant_message", "6:finished"}
	if got := r.events(); !slices.Equal(got, want) {
		t.Fatalf("events delivered %v, want %v (each once, in order)", got, want)
	}
}

func connect(t *testing.T, url string) (*tetherclient.Client, *recorder) {
	t.Helper()
	c := tetherclient.Connect(context.Background(), tetherclient.Config{
		URL: url, Token: tetherclient.StaticToken(token(t, "alice")), MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c, record(c)
}

// TestClientReconnectsAndResumes: the client's connection is cut twice
// (a network blip); it reconnects through the gateway, resumes after the
// last event it saw, gets the prompt again, answers, and the conversation
// completes with every event delivered once.
func TestClientReconnectsAndResumes(t *testing.T) {
	ns := awaitingOnOneRuntime(t, "127.0.20.1", "blip")

	g := startGateway(t)
	lb := newBalancer(t, g.addr)
	c, r := connect(t, lb.url(ns, "blip"))
	first := r.wait(t, "the prompt", 1, isType(protocol.TypePendingPrompt))

	for i := 2; i <= 3; i++ {
		lb.cut("")
		again := r.wait(t, "the prompt after reconnecting", i, isType(protocol.TypePendingPrompt))
		if again.Prompt.ID != first.Prompt.ID || again.Seq != first.Seq {
			t.Fatalf("prompt after reconnecting %+v, before %+v", again.Prompt, first.Prompt)
		}
	}
	if c.Binds() != 3 {
		t.Fatalf("%d binds, want 3", c.Binds())
	}
	if p := c.Prompt(); p == nil || p.ID != first.Prompt.ID {
		t.Fatalf("the client's pending prompt %+v", p)
	}
	if _, err := c.Answer(first.Prompt.ID, "approve"); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "finished", 1, isFinished)
	wantEvents(t, r)
	if c.Pending() != 0 || c.Prompt() != nil {
		t.Fatalf("pending %d, prompt %+v after the end", c.Pending(), c.Prompt())
	}
}

// TestOwnerKilledMidConversation: the runtime owning a conversation dies
// while a client is bound through the gateway; the client's socket stays
// open, gets a status frame, then the prompt again from the new owner; the
// answer completes the conversation; nothing is lost or repeated. Redis
// is the store, as in production.
func TestOwnerKilledMidConversation(t *testing.T) {
	redis := testredis.Start(t)
	openLog := func() *redislog.Log {
		log, err := redislog.New(redislog.Options{Addrs: []string{redis.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = log.Close() })
		return log
	}
	ns := namespace(t)
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port,
		tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreRedis, Redis: &tetherv1alpha1.RedisStoreSpec{Addresses: []string{redis.Addr}}})
	a := testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.21.1", Port: port, Log: openLog()})
	key := createConversation(t, ns, "kill")
	before := testworker.WaitConversation(t, env.Client, key, "AwaitingInput on A", awaiting("approvals-a"))

	g := startGateway(t)
	c, r := connect(t, g.url(ns, "kill"))
	first := r.wait(t, "the prompt", 1, isType(protocol.TypePendingPrompt))

	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-b", IP: "127.0.21.2", Port: port, Log: openLog()})
	// A dies: its process stops, and the kubelet reports its pod gone.
	a.Stop()
	if err := env.Client.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvals-a"}},
		client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	status := r.wait(t, "a status frame", 1, isType(protocol.TypeStatus))
	again := r.wait(t, "the prompt from the new owner", 2, isType(protocol.TypePendingPrompt))
	if again.Prompt.ID != first.Prompt.ID || again.Seq != first.Seq {
		t.Fatalf("new owner's prompt %+v, old %+v", again.Prompt, first.Prompt)
	}
	after := testworker.WaitConversation(t, env.Client, key, "AwaitingInput on B", awaiting("approvals-b"))
	if after.Status.Lease.Epoch <= before.Status.Lease.Epoch {
		t.Fatalf("epoch %d after the move, %d before", after.Status.Lease.Epoch, before.Status.Lease.Epoch)
	}
	if _, err := c.Answer(again.Prompt.ID, "approve"); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "finished", 1, isFinished)
	wantEvents(t, r)
	if c.Binds() != 1 {
		t.Fatalf("the client connected %d times; the gateway should have held its socket", c.Binds())
	}
	t.Logf("status frame while moving: phase %s, %q", status.Phase, status.Message)
}

// TestGatewayReplicaKilled: two gateway replicas behind a balancer; the one
// holding the client's socket dies; the client reconnects to the other and
// resumes.
func TestGatewayReplicaKilled(t *testing.T) {
	ns := awaitingOnOneRuntime(t, "127.0.22.1", "replicas")

	g1, g2 := startGateway(t), startGateway(t)
	lb := newBalancer(t, g1.addr, g2.addr)
	c, r := connect(t, lb.url(ns, "replicas"))
	first := r.wait(t, "the prompt", 1, isType(protocol.TypePendingPrompt))
	serving, other := g1, g2
	if g2.srv.Sessions() == 1 {
		serving, other = g2, g1
	}
	// The serving replica dies at once: no close frame, connections reset.
	_ = serving.http.Close()
	lb.kill(serving.addr)
	again := r.wait(t, "the prompt through the other replica", 2, isType(protocol.TypePendingPrompt))
	if again.Prompt.ID != first.Prompt.ID || other.srv.Sessions() != 1 {
		t.Fatalf("after the replica died: prompt %+v, sessions on the other %d", again.Prompt, other.srv.Sessions())
	}
	if _, err := c.Answer(again.Prompt.ID, "approve"); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "finished", 1, isFinished)
	wantEvents(t, r)
}

// TestGatewayDrain: a draining replica closes its sockets with 1001 and
// refuses new ones; the client reconnects to the other replica at once.
func TestGatewayDrain(t *testing.T) {
	ns := awaitingOnOneRuntime(t, "127.0.23.1", "drain")

	g := startGateway(t)
	ws, _, err := dialRaw(t, g.url(ns, "drain"), bearer(token(t, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readFrame(t, ws); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- g.srv.Drain(ctx) }()
	if code := closeCode(t, ws); code != protocol.CloseGoingAway {
		t.Fatalf("close %d, want %d", code, protocol.CloseGoingAway)
	}
	if err := <-drained; err != nil || g.srv.Sessions() != 0 {
		t.Fatalf("drain: %v, %d sessions left", err, g.srv.Sessions())
	}
	if _, status, err := dialRaw(t, g.url(ns, "drain"), bearer(token(t, "alice"))); err == nil || status != 503 {
		t.Fatalf("connecting to a draining replica: %v, HTTP %d", err, status)
	}
}

// TestSuspendedConversationWakes: connecting to a Suspended conversation
// wakes it; the client is held, then gets the prompt. The gateway runs with
// only its generated role.
func TestSuspendedConversationWakes(t *testing.T) {
	ns, port := namespace(t), testworker.FreePort(t)
	createIdlingAgent(t, ns, port)
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.24.1", Port: port, Log: kubeLog()})
	key := createConversation(t, ns, "sleepy")
	suspended := waitLong(t, key, "Suspended", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseSuspended
	})

	g := startGatewayAs(t, gatewayUser(t))
	c, r := connect(t, g.url(ns, "sleepy"))
	status := r.wait(t, "a status frame", 1, isType(protocol.TypeStatus))
	if status.Phase != string(tetherv1alpha1.PhaseSuspended) {
		t.Fatalf("first status %+v, want phase Suspended", status)
	}
	prompt := r.wait(t, "the prompt after waking", 1, isType(protocol.TypePendingPrompt))
	if prompt.Prompt.ID != suspended.Status.Prompt.ID {
		t.Fatalf("prompt %+v, want %s", prompt.Prompt, suspended.Status.Prompt.ID)
	}
	if c.Binds() != 1 {
		t.Fatalf("%d binds, want 1", c.Binds())
	}
}

// TestHeldFramesAreBounded: while a conversation has no owner, the gateway
// holds the client's frames up to its bound, refuses the rest with an error
// frame, and forwards the held ones as soon as an owner appears.
func TestHeldFramesAreBounded(t *testing.T) {
	ns := namespace(t)
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{})
	createConversation(t, ns, "early")

	g := startGateway(t, func(c *gateway.Config) { c.HoldFrames = 3 })
	ws, _, err := dialRaw(t, g.url(ns, "early"), bearer(token(t, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	if f, err := readFrame(t, ws); err != nil || f.Type != protocol.TypeStatus || f.Phase != string(tetherv1alpha1.PhasePending) {
		t.Fatalf("first frame %+v, %v; want status Pending", f, err)
	}
	for i := 1; i <= 4; i++ {
		if err := ws.WriteJSON(protocol.ClientFrame{Type: protocol.TypeMessage, ID: fmt.Sprintf("m%d", i), Text: "hello"}); err != nil {
			t.Fatal(err)
		}
	}
	if f, err := readFrame(t, ws); err != nil || f.Type != protocol.TypeError || f.Code != string(protocol.CodeHoldFull) || f.ID != "m4" {
		t.Fatalf("frame %+v, %v; want a hold_full error for m4", f, err)
	}
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.25.1", Port: port, Log: kubeLog()})
	acked := map[string]bool{}
	for len(acked) < 3 {
		f, err := readFrame(t, ws)
		if err != nil {
			t.Fatalf("waiting for acks (have %v): %v", acked, err)
		}
		if f.Type == protocol.TypeAck {
			acked[f.ID] = true
		}
	}
	if !acked["m1"] || !acked["m2"] || !acked["m3"] {
		t.Fatalf("acks %v, want m1 m2 m3", acked)
	}
}

// TestHoldTimeout: a conversation that finds no owner within the hold
// timeout closes the socket with 4012, which tells the client to retry.
func TestHoldTimeout(t *testing.T) {
	ns := namespace(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", testworker.FreePort(t), tetherv1alpha1.StoreSpec{})
	createConversation(t, ns, "lonely")
	g := startGateway(t, func(c *gateway.Config) { c.HoldTimeout = 500 * time.Millisecond })
	ws, _, err := dialRaw(t, g.url(ns, "lonely"), bearer(token(t, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, ws); code != protocol.CloseHoldTimeout || protocol.ActionFor(code) != protocol.ReconnectWithBackoff {
		t.Fatalf("close %d, want %d", code, protocol.CloseHoldTimeout)
	}
}
