package controllers

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// computeAgentStatus derives an Agent's status from its pods, their Leases and
// the conversations placed on them (by owner pod name). It also returns when
// the status could change without an event: the earliest Lease expiry of a
// usable pod.
func computeAgentStatus(agent *tetherv1alpha1.Agent, workers []workerPod, loads map[string]int32, selector string, now time.Time) (tetherv1alpha1.AgentStatus, time.Duration) {
	status := tetherv1alpha1.AgentStatus{
		Selector: selector, ObservedGeneration: agent.Generation,
		Conditions: append([]metav1.Condition(nil), agent.Status.Conditions...),
	}
	perPod := agent.Spec.ConversationsPerPod
	unusable := map[string]int{}
	var recheck time.Duration
	for _, w := range workers {
		if w.pod.DeletionTimestamp == nil {
			status.Replicas++
		}
		status.Conversations += loads[w.pod.Name]
		ok, why := usable(w.pod, w.lease, now)
		if !ok {
			unusable[why]++
			continue
		}
		status.ReadyReplicas++
		status.Capacity += perPod
		if free := perPod - loads[w.pod.Name]; free > 0 {
			status.FreeCapacity += free
		}
		if expiry, _ := leaseExpiry(w.pod, w.lease); recheck == 0 || expiry.Sub(now) < recheck {
			recheck = expiry.Sub(now)
		}
	}

	cond := metav1.Condition{Type: string(tetherv1alpha1.ConditionReady), ObservedGeneration: agent.Generation, LastTransitionTime: metav1.NewTime(now)}
	switch {
	case len(workers) == 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, string(tetherv1alpha1.ReasonNoReadyPods), "no worker pods"
	case status.ReadyReplicas == 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, string(tetherv1alpha1.ReasonNoReadyPods)
		cond.Message = fmt.Sprintf("none of %d worker pods can take conversations (%s)", len(workers), describeCounts(unusable))
	case status.FreeCapacity == 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, string(tetherv1alpha1.ReasonFull)
		cond.Message = fmt.Sprintf("all %d ready pods hold %d conversations, their capacity; scale the Agent", status.ReadyReplicas, perPod)
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, string(tetherv1alpha1.ReasonPodsReady)
		cond.Message = fmt.Sprintf("%d of %d pods ready, %d free slots", status.ReadyReplicas, status.Replicas, status.FreeCapacity)
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	return status, recheck
}
