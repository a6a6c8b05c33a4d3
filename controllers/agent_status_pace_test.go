package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

func agentStatus(replicas, ready, conversations, free int32, readyStatus metav1.ConditionStatus, message string) *tetherv1alpha1.AgentStatus {
	return &tetherv1alpha1.AgentStatus{
		Replicas: replicas, ReadyReplicas: ready, Conversations: conversations, FreeCapacity: free, Capacity: ready * 10,
		Conditions: []metav1.Condition{{Type: string(tetherv1alpha1.ConditionReady), Status: readyStatus, Reason: "R", Message: message}},
	}
}

func TestCountsOnly(t *testing.T) {
	base := agentStatus(2, 2, 5, 15, metav1.ConditionTrue, "2 of 2 pods ready, 15 free slots")
	for _, tc := range []struct {
		name string
		next *tetherv1alpha1.AgentStatus
		want bool
	}{
		{"the same", agentStatus(2, 2, 5, 15, metav1.ConditionTrue, "2 of 2 pods ready, 15 free slots"), true},
		{"conversations and free slots", agentStatus(2, 2, 9, 11, metav1.ConditionTrue, "2 of 2 pods ready, 11 free slots"), true},
		{"a pod fewer", agentStatus(1, 1, 5, 5, metav1.ConditionTrue, "1 of 1 pods ready, 5 free slots"), false},
		{"a pod no longer ready", agentStatus(2, 1, 5, 5, metav1.ConditionTrue, "1 of 2 pods ready, 5 free slots"), false},
		{"full: Ready goes False", agentStatus(2, 2, 20, 0, metav1.ConditionFalse, "all 2 ready pods hold 10 conversations"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := countsOnly(base, tc.next); got != tc.want {
				t.Errorf("countsOnly = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStatusPace(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(t0)
	r := &AgentReconciler{Clock: clk, statusWritten: map[client.ObjectKey]time.Time{}}
	key := client.ObjectKey{Namespace: "ns", Name: "a"}
	was := agentStatus(2, 2, 5, 15, metav1.ConditionTrue, "15 free")
	counts := agentStatus(2, 2, 6, 14, metav1.ConditionTrue, "14 free")
	podLost := agentStatus(1, 1, 6, 4, metav1.ConditionTrue, "4 free")

	if wait := r.statusPace(key, was, counts); wait != 0 {
		t.Fatalf("the first write waits %s, want 0", wait)
	}
	clk.SetTime(t0.Add(300 * time.Millisecond))
	if wait := r.statusPace(key, was, counts); wait != agentStatusInterval-300*time.Millisecond {
		t.Errorf("counts 300ms after a write wait %s, want %s", wait, agentStatusInterval-300*time.Millisecond)
	}
	if wait := r.statusPace(key, was, podLost); wait != 0 {
		t.Errorf("a pod lost waits %s, want 0", wait)
	}
	clk.SetTime(t0.Add(300*time.Millisecond + agentStatusInterval))
	if wait := r.statusPace(key, was, counts); wait != 0 {
		t.Errorf("counts an interval after the last write wait %s, want 0", wait)
	}
	r.forgetStatus(key)
	if wait := r.statusPace(key, was, counts); wait != 0 {
		t.Errorf("counts of a forgotten Agent wait %s, want 0", wait)
	}
}
