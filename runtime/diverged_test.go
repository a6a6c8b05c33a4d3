package runtime_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/runtime/conversation"
)

// asking is an agent that asks question about the request.
func asking(question string) conversation.Handler {
	return conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error {
		answer, err := t.Ask(ctx, "confirm", fmt.Sprintf(question, t.Input), "yes", "no")
		if err != nil {
			return err
		}
		return t.Send(ctx, "you said "+answer)
	})
}

// TestDivergedReplayOnTheConversation: the agent is changed while a
// conversation waits on its question, and its pod goes; the new owner's
// agent asks another question. The Conversation says so: condition
// ReplayDiverged, with where; the new question is the one pending.
func TestDivergedReplayOnTheConversation(t *testing.T) {
	ctx := context.Background()
	ns := newPod(t, "unused").Namespace
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{})
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.15.1", Port: port,
		Handler: asking("Refund %s?")})
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "changed"},
		Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"}, Subjects: []string{"alice"},
			InitialInput: "order 1234"},
	}
	if err := env.Client.Create(ctx, conv); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(conv)
	testworker.WaitConversation(t, env.Client, key, "AwaitingInput on A", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput && c.Status.Owner != nil && c.Status.Owner.Name == "approvals-a"
	})

	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-b", IP: "127.0.15.2", Port: port,
		Handler: asking("Refund %s to the original card?")})
	if err := env.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvals-a"}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	after := testworker.WaitConversation(t, env.Client, key, "the new question on B", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Owner != nil && c.Status.Owner.Name == "approvals-b" && c.Status.Prompt != nil &&
			c.Status.Prompt.Text == "Refund order 1234 to the original card?"
	})
	cond := meta.FindStatusCondition(after.Status.Conditions, string(tetherv1alpha1.ConditionReplayDiverged))
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != string(tetherv1alpha1.ReasonReplayDiverged) ||
		!strings.Contains(cond.Message, "question confirm") || cond.ObservedGeneration != after.Generation {
		t.Fatalf("ReplayDiverged condition %+v", cond)
	}
	t.Logf("condition: %s", cond.Message)
}
