package controllers

import (
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// agentStatusInterval is how long an Agent's status waits after its last
// write before it is written again when only its conversation counts
// changed. Every placement, move and end changes them: a node's worth of
// moves would otherwise write the Agent's status as often as its reconcile
// runs, tens of times a second, each write as costly as a move's. A change
// of pods, readiness or a condition's status is written at once; the
// scale-up and deletion-cost decisions read the loads, never this status.
const agentStatusInterval = time.Second

// statusPace says how long the write of an Agent's status from old to next
// should wait (0: write it now), and remembers the write when it is now.
func (r *AgentReconciler) statusPace(key client.ObjectKey, old, next *tetherv1alpha1.AgentStatus) time.Duration {
	now := r.Clock.Now()
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	if last, ok := r.statusWritten[key]; ok && countsOnly(old, next) {
		if wait := last.Add(agentStatusInterval).Sub(now); wait > 0 {
			return wait
		}
	}
	r.statusWritten[key] = now
	return 0
}

// forgetStatus drops what the reconciler remembers of a deleted Agent's
// status writes.
func (r *AgentReconciler) forgetStatus(key client.ObjectKey) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	delete(r.statusWritten, key)
}

// countsOnly reports whether two statuses of an Agent differ at most in
// their conversation counts and in the Ready condition's message that
// quotes them.
func countsOnly(a, b *tetherv1alpha1.AgentStatus) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	a.Conversations, a.FreeCapacity = b.Conversations, b.FreeCapacity
	ready := string(tetherv1alpha1.ConditionReady)
	if ca, cb := meta.FindStatusCondition(a.Conditions, ready), meta.FindStatusCondition(b.Conditions, ready); ca != nil && cb != nil {
		ca.Message = cb.Message
	}
	return equality.Semantic.DeepEqual(a, b)
}

// soonest is the shortest of the positive durations, or 0.
func soonest(ds ...time.Duration) time.Duration {
	var s time.Duration
	for _, d := range ds {
		if d > 0 && (s == 0 || d < s) {
			s = d
		}
	}
	return s
}
