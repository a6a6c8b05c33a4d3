package gateway_test

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
)

// testLease is the Lease duration of test runtimes (testworker).
const testLease = 3 * time.Second

// TestOwnerFrozenWhileConversationMoves: the runtime owning two
// conversations stops answering without closing anything (frozen, as with
// SIGSTOP). Its Lease expires, the controller moves both conversations to
// another pod, and the gateway follows the move on the sockets it holds
// without waiting for the frozen owner's sockets to fail: the waiting client
// gets its prompt again, and the answer that was in flight to the frozen
// owner is applied by the new one and finishes the turn, each within the
// Lease plus a second, on the same socket. The thawed owner changes nothing.
func TestOwnerFrozenWhileConversationMoves(t *testing.T) {
	ns := namespace(t)
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{})
	a := testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.26.1", Port: port})
	waiting, inFlight := createConversation(t, ns, "frozen-waiting"), createConversation(t, ns, "frozen-answer")
	testworker.WaitConversation(t, env.Client, waiting, "AwaitingInput on A", awaiting("approvals-a"))
	before := testworker.WaitConversation(t, env.Client, inFlight, "AwaitingInput on A", awaiting("approvals-a"))
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-b", IP: "127.0.26.2", Port: port})

	g := startGateway(t)
	cw, rw := connect(t, g.url(ns, waiting.Name))
	firstW := rw.wait(t, "the prompt", 1, isType(protocol.TypePendingPrompt))
	ca, ra := connect(t, g.url(ns, inFlight.Name))
	firstA := ra.wait(t, "the prompt", 1, isType(protocol.TypePendingPrompt))

	a.Freeze()
	frozenAt := time.Now()
	answerID, err := ca.Answer(firstA.Prompt.ID, "approve")
	if err != nil {
		t.Fatal(err)
	}

	again := rw.wait(t, "the prompt from the new owner", 2, isType(protocol.TypePendingPrompt))
	promptAfter := time.Since(frozenAt)
	ack := ra.wait(t, "the ack of the answer", 1, func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeAck && f.ID == answerID })
	ra.wait(t, "finished", 1, isFinished)
	answeredAfter := time.Since(frozenAt)
	t.Logf("frozen owner: prompt again after %s, in-flight answer applied and the turn finished after %s", promptAfter.Round(time.Millisecond), answeredAfter.Round(time.Millisecond))

	if again.Prompt.ID != firstW.Prompt.ID || again.Seq != firstW.Seq {
		t.Fatalf("the new owner's prompt %+v, the old one's %+v", again.Prompt, firstW.Prompt)
	}
	if bound := testLease + time.Second; promptAfter > bound || answeredAfter > bound {
		t.Fatalf("prompt again after %s, answer applied after %s: want both within the Lease plus 1 s (%s)", promptAfter, answeredAfter, bound)
	}
	if ack.Duplicate {
		t.Fatalf("the answer was applied before the move, by the frozen owner: %+v", ack)
	}
	if cw.Binds() != 1 || ca.Binds() != 1 {
		t.Fatalf("binds %d and %d: the gateway should have kept both sockets open", cw.Binds(), ca.Binds())
	}
	rw.wait(t, "a status frame", 1, isType(protocol.TypeStatus))
	wantEvents(t, ra)

	// Thawed, the old owner finds itself fenced; nothing it held changes.
	a.Thaw()
	ownedByB := func(key client.ObjectKey) bool {
		var c tetherv1alpha1.Conversation
		return env.Client.Get(context.Background(), key, &c) == nil && c.Status.Owner != nil && c.Status.Owner.Name == "approvals-b"
	}
	await.Stays(t, 2*time.Second, "both conversations on B after A thawed", func() bool { return ownedByB(waiting) && ownedByB(inFlight) })
	testworker.WaitConversation(t, env.Client, waiting, "AwaitingInput on B", awaiting("approvals-b"))
	after := testworker.WaitConversation(t, env.Client, inFlight, "Succeeded on B", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseSucceeded && c.Status.Owner != nil && c.Status.Owner.Name == "approvals-b"
	})
	if after.Status.Lease.Epoch <= before.Status.Lease.Epoch {
		t.Fatalf("epoch %d after the move, %d before", after.Status.Lease.Epoch, before.Status.Lease.Epoch)
	}
	wantEvents(t, ra)
	if len(rw.events()) != 3 {
		t.Fatalf("the waiting client saw %v, want the 3 events before the prompt, once each", rw.events())
	}
}

// TestDialToAFrozenOwnerGivenUpWhenTheConversationMoves: a client connects
// while the owner is frozen. The frozen runtime's socket takes the dial and
// never answers it, which would hold the client until the dial timeout;
// once the controller moves the conversation, the gateway gives that dial
// up and connects to the new owner at once: the prompt again within the
// Lease plus a second of the freeze, before the dial timeout.
func TestDialToAFrozenOwnerGivenUpWhenTheConversationMoves(t *testing.T) {
	ns := namespace(t)
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{})
	a := testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.27.1", Port: port})
	waiting := createConversation(t, ns, "frozen-dial")
	testworker.WaitConversation(t, env.Client, waiting, "AwaitingInput on A", awaiting("approvals-a"))
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-b", IP: "127.0.27.2", Port: port})

	g := startGateway(t)
	a.Freeze()
	defer a.Thaw()
	frozenAt := time.Now()
	_, r := connect(t, g.url(ns, waiting.Name))
	r.wait(t, "the prompt from the new owner", 1, isType(protocol.TypePendingPrompt))
	after := time.Since(frozenAt)
	t.Logf("connected while the owner was frozen: the prompt after %s", after.Round(time.Millisecond))
	if bound := testLease + time.Second; after > bound {
		t.Fatalf("the prompt after %s, want within the Lease plus 1 s (%s): the dial to the frozen owner was not given up", after, bound)
	}
	testworker.WaitConversation(t, env.Client, waiting, "AwaitingInput on B", awaiting("approvals-b"))
}
