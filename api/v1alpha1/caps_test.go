package v1alpha1_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// fill returns a string of exactly n bytes made of 3-byte characters where
// possible, the worst case for a cap counted in characters.
func fill(n int) string {
	return strings.Repeat("€", n/3) + strings.Repeat("x", n%3)
}

// TestLargestConversationFitsIn16KiB fills every capped field of a
// Conversation to its cap and checks the object the API server stores,
// managed fields included, stays under 16 KiB.
func TestLargestConversationFitsIn16KiB(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	var subjects []string
	for i := range tetherv1alpha1.MaxSubjects {
		subjects = append(subjects, string(rune('a'+i))+fill(tetherv1alpha1.MaxSubjectLength-1))
	}
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: strings.Repeat("c", 63),
			// Room for what users and Tether add to metadata.
			Labels:     map[string]string{"app.kubernetes.io/name": strings.Repeat("o", 63)},
			Finalizers: []string{"tether.dev/event-log"},
		},
		Spec: tetherv1alpha1.ConversationSpec{
			AgentRef:                tetherv1alpha1.AgentReference{Name: strings.Repeat("a", 253)},
			Subjects:                subjects,
			InitialInput:            fill(tetherv1alpha1.MaxInitialInputLength),
			IdleSuspendSeconds:      ptr.To[int32](2592000),
			TTLSecondsAfterFinished: ptr.To[int32](31536000),
		},
	}
	if err := env.Client.Create(ctx, conv); err != nil {
		t.Fatalf("largest valid spec rejected: %v", err)
	}
	var options []string
	for i := range tetherv1alpha1.MaxPromptOptions {
		options = append(options, string(rune('a'+i))+fill(tetherv1alpha1.MaxPromptOptionLength-1))
	}
	now := metav1.NewTime(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	micro := metav1.NewMicroTime(now.Time)
	conv.Status = tetherv1alpha1.ConversationStatus{
		Phase: tetherv1alpha1.PhaseAwaitingInput,
		Prompt: &tetherv1alpha1.Prompt{
			ID: strings.Repeat("p", tetherv1alpha1.MaxPromptIDLength), Text: fill(tetherv1alpha1.MaxPromptTextLength),
			Options: options, AskedAt: now, Sequence: 1 << 40,
		},
		Owner: &tetherv1alpha1.OwnerPod{Name: strings.Repeat("o", 253), UID: strings.Repeat("u", 36), IP: "fd00:0000:0000:0000:0000:0000:0000:0001", Port: 65535},
		Lease: &tetherv1alpha1.ConversationLease{
			Holder: strings.Repeat("o", 253), Epoch: 1 << 40, AcquireTime: &micro, DurationSeconds: 300,
		},
		LastSequence: 1 << 40, RescheduleCount: 1 << 30, StartTime: &now, CompletionTime: &now, ObservedGeneration: 1 << 40,
	}
	for i := range tetherv1alpha1.MaxConversationConditions {
		conv.Status.Conditions = append(conv.Status.Conditions, metav1.Condition{
			Type: "Condition" + string(rune('A'+i)), Status: metav1.ConditionFalse, Reason: strings.Repeat("R", 64),
			Message: fill(tetherv1alpha1.MaxConditionMessageLength), LastTransitionTime: now, ObservedGeneration: 1 << 40,
		})
	}
	if err := env.Client.Status().Update(ctx, conv); err != nil {
		t.Fatalf("largest valid status rejected: %v", err)
	}

	var stored tetherv1alpha1.Conversation
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(conv), &stored); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(&stored)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("largest Conversation: %d bytes as JSON, managed fields included", len(data))
	if len(data) >= 16*1024 {
		t.Errorf("largest Conversation is %d bytes; the caps must keep it under 16 KiB", len(data))
	}
}
