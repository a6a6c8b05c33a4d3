package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/eventlog/redislog"
	"tether.dev/tether/internal/fencing"
	"tether.dev/tether/internal/testing/testredis"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
)

// dial binds a socket to a conversation on a worker, as the gateway does.
func dial(t *testing.T, w *testworker.Worker, ns, name string, after int64) *websocket.Conn {
	t.Helper()
	url := fmt.Sprintf("ws://%s%s%s/%s?after=%d", w.Addr, protocol.PathPrefix, ns, name, after)
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(url, http.Header{"Authorization": {"Bearer " + testworker.GatewayToken(t, env)}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("dialing %s: %v", url, err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

// next reads frames until one satisfies want, failing after 10 s.
func next(t *testing.T, ws *websocket.Conn, what string, want func(protocol.ServerFrame) bool) protocol.ServerFrame {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		var f protocol.ServerFrame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatalf("bad frame %s: %v", data, err)
		}
		if want(f) {
			return f
		}
	}
}

// closedAsNotOwner reads ws until it closes, which it must do with "not
// owner": the conversation moved, and the client reconnects.
func closedAsNotOwner(t *testing.T, ws *websocket.Conn) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != protocol.CloseNotOwner {
				t.Fatalf("the old owner's socket ended with %v, want close %d", err, protocol.CloseNotOwner)
			}
			return
		}
	}
}

func send(t *testing.T, ws *websocket.Conn, f protocol.ClientFrame) {
	t.Helper()
	if err := ws.WriteJSON(f); err != nil {
		t.Fatal(err)
	}
}

// TestTakeoverMidConversation: runtime A owns a conversation awaiting a
// human; A's pod is deleted; the controller moves it to runtime B, which
// resumes from the log and presents the same prompt; the answer given to B
// completes it; A, with its old state, can write nothing.
func TestTakeoverMidConversation(t *testing.T) {
	t.Run("kubernetes store", func(t *testing.T) {
		takeover(t, "127.0.12", tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreKubernetes}, func() eventlog.Log { return kubelog.New(env.Client) })
	})
	t.Run("redis store", func(t *testing.T) {
		server := testredis.Start(t)
		spec := tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreRedis, Redis: &tetherv1alpha1.RedisStoreSpec{Addresses: []string{server.Addr}}}
		takeover(t, "127.0.14", spec, func() eventlog.Log {
			log, err := redislog.New(redislog.Options{Addrs: []string{server.Addr}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = log.Close() })
			return log
		})
	})
}

// takeover runs the scenario with workers at subnet.1 and subnet.2, each with
// its own client of the store.
func takeover(t *testing.T, subnet string, store tetherv1alpha1.StoreSpec, openLog func() eventlog.Log) {
	ctx := context.Background()
	pod := newPod(t, "unused") // a namespace of its own
	ns := pod.Namespace
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, store)
	a := testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: subnet + ".1", Port: port, Log: openLog()})
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "refund"},
		Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
			Subjects: []string{"alice"}, InitialInput: "refund order 1234"},
	}
	if err := env.Client.Create(ctx, conv); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(conv)
	before := testworker.WaitConversation(t, env.Client, key, "AwaitingInput on A", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput && c.Status.Owner != nil && c.Status.Owner.Name == "approvals-a"
	})
	if p := before.Status.Prompt; p == nil || p.Text != "Approve: refund order 1234?" || len(p.Options) != 2 {
		t.Fatalf("prompt %+v", p)
	}
	// The owner's Ready condition says which generation it saw.
	if ready := meta.FindStatusCondition(before.Status.Conditions, string(tetherv1alpha1.ConditionReady)); ready == nil ||
		ready.ObservedGeneration != before.Generation || ready.ObservedGeneration == 0 {
		t.Fatalf("Ready condition %+v of generation %d", ready, before.Generation)
	}

	// A client bound to A sees the history, the marker and the prompt.
	wsA := dial(t, a, ns, "refund", 0)
	var seen int64
	for _, want := range []string{protocol.EventUserMessage, protocol.EventAssistantMessage, protocol.EventPrompt} {
		f := next(t, wsA, want, func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeEvent })
		if f.Event != want || f.Seq != seen+1 {
			t.Fatalf("event %+v, want %s at seq %d", f, want, seen+1)
		}
		seen = f.Seq
	}
	next(t, wsA, "replay_complete", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeReplayComplete })
	prompt := next(t, wsA, "the pending prompt", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypePendingPrompt })

	// A's pod goes; B takes over.
	b := testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-b", IP: subnet + ".2", Port: port, Log: openLog()})
	if err := env.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvals-a"}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	after := testworker.WaitConversation(t, env.Client, key, "AwaitingInput on B", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput && c.Status.Owner != nil && c.Status.Owner.Name == "approvals-b"
	})
	if after.Status.Prompt.ID != prompt.Prompt.ID || after.Status.RescheduleCount != 1 || after.Status.Lease.Epoch <= before.Status.Lease.Epoch {
		t.Fatalf("after the move: %+v", after.Status)
	}
	// A's socket is closed with "not owner", so the client reconnects.
	closedAsNotOwner(t, wsA)

	// The client resumes on B after what it saw: nothing again, then the
	// prompt again.
	wsB := dial(t, b, ns, "refund", seen)
	marker := next(t, wsB, "replay_complete", func(f protocol.ServerFrame) bool {
		if f.Type == protocol.TypeEvent {
			t.Errorf("event %d replayed again after %d", f.Seq, seen)
		}
		return f.Type == protocol.TypeReplayComplete
	})
	if !*marker.Complete || marker.LastSeq != seen {
		t.Fatalf("marker %+v", marker)
	}
	again := next(t, wsB, "the prompt again", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypePendingPrompt })
	if again.Prompt.ID != prompt.Prompt.ID || again.Seq != prompt.Seq {
		t.Fatalf("B presents %+v, A presented %+v", again, prompt)
	}

	send(t, wsB, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-1", PromptID: again.Prompt.ID, Text: "approve"})
	ack := next(t, wsB, "the ack", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeAck })
	if ack.ID != "a-1" || ack.Seq != seen+1 {
		t.Fatalf("ack %+v", ack)
	}
	done := testworker.WaitConversation(t, env.Client, key, "Succeeded", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseSucceeded
	})
	if done.Status.CompletionTime == nil || done.Status.Prompt != nil {
		t.Errorf("finished status %+v", done.Status)
	}

	// Nothing recorded twice, nothing lost.
	log := openLog()
	events, err := log.Read(ctx, eventlog.Key{Namespace: ns, Name: "refund"}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Type)
	}
	want := "[user_message assistant_message prompt answer assistant_message finished]"
	if fmt.Sprint(kinds) != want {
		t.Fatalf("log %v, want %s", kinds, want)
	}

	// A, brought back with its old state, can neither append nor write
	// status.
	old := before.Status.Lease.Epoch
	if _, err := log.Append(ctx, eventlog.Key{Namespace: ns, Name: "refund"}, old, []eventlog.Event{{Type: protocol.EventAssistantMessage}}); !errors.Is(err, eventlog.ErrFenced) {
		t.Errorf("A's append: %v, want ErrFenced", err)
	}
	if _, err := fencing.UpdateStatus(ctx, env.Client, env.Client.Status(), key, fencing.Holder{Pod: "approvals-a", Epoch: old},
		func(c *tetherv1alpha1.Conversation) error { c.Status.Phase = tetherv1alpha1.PhaseRunning; return nil }); !errors.Is(err, fencing.ErrFenced) {
		t.Errorf("A's status write: %v, want ErrFenced", err)
	}
}
