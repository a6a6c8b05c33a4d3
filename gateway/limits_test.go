package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/gateway"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/agents"
)

// closeOf reads until the socket closes and returns its close frame.
func closeOf(t *testing.T, ws *websocket.Conn) *websocket.CloseError {
	t.Helper()
	for {
		if _, err := readFrame(t, ws); err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("socket ended with %v, not a close frame", err)
			}
			return ce
		}
	}
}

// TestUnauthenticatedConnectionsAreBounded: connections that never finish
// a handshake (a slowloris, or idle sockets) hold at most the bound; more
// are closed at once, and room is made as they go.
func TestUnauthenticatedConnectionsAreBounded(t *testing.T) {
	const bound = 4
	g := startGateway(t, func(c *gateway.Config) { c.MaxUnauthenticated = bound })
	var conns []net.Conn
	for range 10 {
		c, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns = append(conns, c)
	}
	// The gateway accepts them in order: the first ones are counted, the
	// rest closed as they are accepted. A held one times out reading.
	var held []net.Conn
	closedAtOnce := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closedAtOnce++
			continue
		}
		held = append(held, c)
	}
	t.Logf("10 connections that send nothing: %d held, %d closed at once (bound %d)", len(held), closedAtOnce, bound)
	if len(held) != bound || closedAtOnce != 10-bound {
		t.Fatalf("%d held and %d closed, want %d and %d", len(held), closedAtOnce, bound, 10-bound)
	}
	for _, c := range held {
		_ = c.Close()
	}
	// Room again: a real client connects (it is refused as not yours,
	// after its handshake: the bound let it in).
	deadline := time.Now().Add(5 * time.Second)
	for {
		ws, _, err := dialRaw(t, g.url("default", "nobody"), bearer(token(t, "alice")))
		if err == nil {
			if code := closeCode(t, ws); code != protocol.CloseForbidden {
				t.Fatalf("close %d", code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after the held connections closed: %v", err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestConnectsPerSubjectAreRateLimited: a subject reconnecting in a loop is
// refused with 4009 past its burst (each connect may cost a wake and a
// token check); another subject is not affected.
func TestConnectsPerSubjectAreRateLimited(t *testing.T) {
	g := startGateway(t, func(c *gateway.Config) { c.ConnectRate, c.ConnectBurst = 0.01, 3 })
	connect := func(subject string) *websocket.CloseError {
		ws, _, err := dialRaw(t, g.url("default", "nobody"), bearer(token(t, subject)))
		if err != nil {
			t.Fatal(err)
		}
		return closeOf(t, ws)
	}
	for i := range 3 {
		if ce := connect("mallory"); ce.Code != protocol.CloseForbidden {
			t.Fatalf("connect %d within the burst: %v", i+1, ce)
		}
	}
	if ce := connect("mallory"); ce.Code != protocol.CloseRateLimited {
		t.Fatalf("connect past the burst: %v, want %d", ce, protocol.CloseRateLimited)
	}
	if ce := connect("alice"); ce.Code != protocol.CloseForbidden {
		t.Fatalf("another subject: %v", ce)
	}
}

// TestNamesCannotBeProbed: a conversation that does not exist and one the
// subject may not use (here, in another namespace) get the same close code
// and reason.
func TestNamesCannotBeProbed(t *testing.T) {
	ns := namespace(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", testworker.FreePort(t), tetherv1alpha1.StoreSpec{})
	createConversation(t, ns, "secret-deal")
	g := startGateway(t)
	var answers []string
	for _, name := range []string{"secret-deal", "no-such-deal"} {
		ws, _, err := dialRaw(t, g.url(ns, name), bearer(token(t, "mallory")))
		if err != nil {
			t.Fatal(err)
		}
		ce := closeOf(t, ws)
		answers = append(answers, ce.Error())
	}
	if answers[0] != answers[1] {
		t.Fatalf("an existing conversation answered %q, a missing one %q: its existence leaks", answers[0], answers[1])
	}
}

// TestRemovedSubjectIsDisconnected: an open socket is authorized again
// whenever its Conversation changes: a subject removed from spec.subjects
// is closed with 4003 at once, whatever state the conversation is in.
func TestRemovedSubjectIsDisconnected(t *testing.T) {
	ns := namespace(t)
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{})
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.23.1", Port: port})
	key := createConversation(t, ns, "revoked")
	testworker.WaitConversation(t, env.Client, key, "AwaitingInput", awaiting("approvals-a"))
	g := startGateway(t)
	ws, _, err := dialRaw(t, g.url(ns, key.Name), bearer(token(t, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, err := readFrame(t, ws)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == protocol.TypePendingPrompt {
			break
		}
	}
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		conv := &tetherv1alpha1.Conversation{}
		if err := env.Client.Get(context.Background(), key, conv); err != nil {
			return err
		}
		conv.Spec.Subjects = []string{"bob"}
		return env.Client.Update(context.Background(), conv)
	}); err != nil {
		t.Fatal(err)
	}
	if ce := closeOf(t, ws); ce.Code != protocol.CloseForbidden {
		t.Fatalf("after alice was removed: %v, want %d", ce, protocol.CloseForbidden)
	}
}

// TestMessageIDsAreScopedToTheirSubject: bob, a second subject of alice's
// conversation, sends his message with the id alice's next message will
// have. Both are applied; alice's is not acknowledged as a duplicate and
// dropped; and each user event names its subject.
func TestMessageIDsAreScopedToTheirSubject(t *testing.T) {
	ns := namespace(t)
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "echo", port, tetherv1alpha1.StoreSpec{})
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "echo", Name: "echo-a", IP: "127.0.23.2", Port: port, Handler: agents.Echo})
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"},
		Spec:       tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "echo"}, Subjects: []string{"alice", "bob"}},
	}
	if err := env.Client.Create(context.Background(), conv); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t)
	send := func(subject, text string) protocol.ServerFrame {
		ws, _, err := dialRaw(t, g.url(ns, conv.Name), bearer(token(t, subject)))
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteJSON(protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-1", Text: text}); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := readFrame(t, ws)
			if err != nil {
				t.Fatal(err)
			}
			if f.Type == protocol.TypeAck && f.ID == "m-1" {
				return f
			}
		}
	}
	bobs := send("bob", "bob's guess")
	alices := send("alice", "alice's real message")
	if bobs.Duplicate || alices.Duplicate || alices.Seq == bobs.Seq {
		t.Fatalf("bob's ack %+v, alice's %+v: alice's message was taken for bob's", bobs, alices)
	}
	again := send("alice", "alice's real message")
	if !again.Duplicate || again.Seq != alices.Seq {
		t.Fatalf("alice sending m-1 again: %+v, want a duplicate of seq %d", again, alices.Seq)
	}
	log := kubelog.New(env.Client)
	fresh := &tetherv1alpha1.Conversation{}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(conv), fresh); err != nil {
		t.Fatal(err)
	}
	events, err := log.Read(context.Background(), eventlog.Key{Namespace: ns, Name: conv.Name, UID: string(fresh.UID)}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	subjects := map[int64]string{}
	for _, e := range events {
		if e.Type == protocol.EventUserMessage {
			var d protocol.TextData
			_ = json.Unmarshal(e.Data, &d)
			subjects[e.Seq] = d.Subject
		}
	}
	if subjects[bobs.Seq] != "bob" || subjects[alices.Seq] != "alice" {
		t.Fatalf("user events record subjects %v, want bob at %d and alice at %d", subjects, bobs.Seq, alices.Seq)
	}
}
