package runtime_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
)

// TestADrainedPodHandsOverAtATurnBoundary: the pod that owns a conversation
// waiting on a human is drained (tether.dev/drain, as a user or the Agent
// controller sets it). The real controllers and runtimes move it: the
// owner parks it, the controller moves it to the other pod, the client's
// socket on the old owner is closed as "not owner" (the gateway holds the
// client meanwhile), it resumes on the new owner with the prompt again, and
// its answer is applied once.
func TestADrainedPodHandsOverAtATurnBoundary(t *testing.T) {
	ctx := context.Background()
	ns := newPod(t, "unused").Namespace
	port := testworker.FreePort(t)
	store := tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreKubernetes}
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, store)
	a := testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.17.1", Port: port, Log: kubelog.New(env.Client)})
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
	b := testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-b", IP: "127.0.17.2", Port: port, Log: kubelog.New(env.Client)})
	wsA := dial(t, a, ns, "refund", 0)
	seen := int64(0)
	for seen < before.Status.LastSequence {
		seen = next(t, wsA, "the history", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeEvent }).Seq
	}
	prompt := next(t, wsA, "the pending prompt", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypePendingPrompt })

	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:"test"}}}`, tetherv1alpha1.DrainAnnotation))
	if err := env.Client.Patch(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvals-a"}}, client.RawPatch("application/merge-patch+json", patch)); err != nil {
		t.Fatal(err)
	}
	after := testworker.WaitConversation(t, env.Client, key, "AwaitingInput on B", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput && c.Status.Owner != nil && c.Status.Owner.Name == "approvals-b"
	})
	if after.Status.Prompt == nil || after.Status.Prompt.ID != prompt.Prompt.ID || after.Status.RescheduleCount != 0 || after.Status.Parked {
		t.Fatalf("after the move: %+v", after.Status)
	}
	closedAsNotOwner(t, wsA)
	wsB := dial(t, b, ns, "refund", seen)
	again := next(t, wsB, "the prompt again", func(f protocol.ServerFrame) bool {
		if f.Type == protocol.TypeEvent {
			t.Errorf("event %d replayed again after %d", f.Seq, seen)
		}
		return f.Type == protocol.TypePendingPrompt
	})
	if again.Prompt.ID != prompt.Prompt.ID || again.Seq != prompt.Seq {
		t.Fatalf("B presents %+v, A presented %+v", again, prompt)
	}
	send(t, wsB, protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "a-1", PromptID: again.Prompt.ID, Text: "approve"})
	testworker.WaitConversation(t, env.Client, key, "Succeeded", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseSucceeded
	})
	events, err := kubelog.New(env.Client).Read(ctx, eventlog.Key{Namespace: ns, Name: "refund"}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Type)
	}
	if want := "[user_message assistant_message prompt answer assistant_message finished]"; fmt.Sprint(kinds) != want {
		t.Fatalf("log %v, want %s", kinds, want)
	}
}
