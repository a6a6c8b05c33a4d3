package controllers

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// A pod annotated tether.dev/drain (by the Agent controller scaling down, or
// by a user) gives its conversations up at turn boundaries: this controller
// marks each one's owner draining, the owner parks it once no turn runs (or
// the running one waits on a human) and says so (status.parked), and the
// conversation is moved then, under a new epoch as any move. A turn that never
// ends keeps its conversation, and so its pod, where it is.

// drainRetry is how long a parked conversation of a drained pod waits for
// room on another pod before it looks again.
const drainRetry = 5 * time.Second

// isDrained reports whether pod is being drained.
func isDrained(pod *corev1.Pod) bool {
	_, ok := pod.Annotations[tetherv1alpha1.DrainAnnotation]
	return ok
}

// drain brings the owner's draining mark in line with its pod and moves a
// conversation its drained owner parked; it reports whether it moved it. pod
// is the owner, alive (judgeOwner found it fit).
func (r *ConversationReconciler) drain(conv *tetherv1alpha1.Conversation, pod *corev1.Pod, now time.Time, out *outcome) bool {
	owner := conv.Status.Owner
	drained := isDrained(pod)
	if drained && owner.Draining && conv.Status.Parked {
		out.drainedFrom = owner.Name
		revoke(conv, tetherv1alpha1.PhaseRescheduling, tetherv1alpha1.ReasonOwnerDraining,
			fmt.Sprintf("moving off pod %s, which is drained, at a turn boundary", owner.Name), now)
		return true
	}
	owner.Draining = drained
	return false
}
