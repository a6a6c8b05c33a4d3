package controllers

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/textlimit"
)

// These functions are the controller's only edits to a Conversation's status.
// Each change of ownership, assignment and revocation alike, moves the epoch
// forward, so a revoked owner holds a stale epoch at once.

// setCondition sets a condition with the object's generation, keeping the
// message within the API's cap.
func setCondition(conv *tetherv1alpha1.Conversation, condType tetherv1alpha1.ConditionType, status metav1.ConditionStatus, reason tetherv1alpha1.ConditionReason, message string, now time.Time) {
	meta.SetStatusCondition(&conv.Status.Conditions, metav1.Condition{
		Type: string(condType), Status: status, Reason: string(reason), Message: textlimit.Truncate(message, tetherv1alpha1.MaxConditionMessageLength),
		ObservedGeneration: conv.Generation, LastTransitionTime: metav1.NewTime(now),
	})
}

// nextEpoch returns the status's epoch plus one.
func nextEpoch(status *tetherv1alpha1.ConversationStatus) int64 {
	if status.Lease == nil {
		return 1
	}
	return status.Lease.Epoch + 1
}

// revoke takes the conversation away from its owner: no owner, a new epoch,
// and phase (Rescheduling or Suspended). The prompt is kept, so the next
// owner presents it again.
func revoke(conv *tetherv1alpha1.Conversation, phase tetherv1alpha1.ConversationPhase, reason tetherv1alpha1.ConditionReason, message string, now time.Time) {
	conv.Status.Lease = &tetherv1alpha1.ConversationLease{Epoch: nextEpoch(&conv.Status)}
	conv.Status.Owner = nil
	conv.Status.Parked = false // the owner's word, gone with it
	conv.Status.Phase = phase
	if conv.Status.Attached {
		// The owner's sockets go with it; their clients were active until now.
		conv.Status.Attached = false
		conv.Status.LastActiveTime = ptr.To(metav1.NewTime(now))
	}
	setCondition(conv, tetherv1alpha1.ConditionScheduled, metav1.ConditionFalse, reason, message, now)
	setCondition(conv, tetherv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message, now)
}

// assign gives the conversation to pod under a new epoch. The phase stays
// Pending or Rescheduling until the new owner claims it.
func assign(conv *tetherv1alpha1.Conversation, pod *corev1.Pod, agent *tetherv1alpha1.Agent, now time.Time) {
	acquired := metav1.NewMicroTime(now)
	conv.Status.Lease = &tetherv1alpha1.ConversationLease{
		Holder: pod.Name, Epoch: nextEpoch(&conv.Status), AcquireTime: &acquired,
		DurationSeconds: agent.Spec.LeaseDurationSeconds,
	}
	conv.Status.Owner = &tetherv1alpha1.OwnerPod{Name: pod.Name, UID: string(pod.UID), IP: pod.Status.PodIP, Port: agent.Spec.RuntimePort}
	if conv.Status.Phase == "" {
		conv.Status.Phase = tetherv1alpha1.PhasePending
	}
	setCondition(conv, tetherv1alpha1.ConditionScheduled, metav1.ConditionTrue, tetherv1alpha1.ReasonPlaced, "placed on pod "+pod.Name, now)
}

func findCondition(conv *tetherv1alpha1.Conversation, condType tetherv1alpha1.ConditionType) *metav1.Condition {
	return meta.FindStatusCondition(conv.Status.Conditions, string(condType))
}

// describeCounts renders {"not ready": 2, "Lease expired": 1} as
// "2 not ready, 1 Lease expired", in a stable order.
func describeCounts(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	return strings.Join(parts, ", ")
}
