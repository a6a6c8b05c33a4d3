package controllers

import (
	"context"
	"fmt"
	"math/bits"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=patch

// DeletionCostAnnotation is the annotation a ReplicaSet scaling down
// deletes the pods of the lowest value first.
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// deletionCost is what a pod holding load conversations costs to delete:
// 0 when it holds none, so that scaling an Agent down removes its empty
// pods first and moves no conversation; then the bit length of the load
// (1, 2-3, 4-7, ...), so the emptier pods go next while a pod is written
// only when its load crosses a power of two, not on every conversation. A
// drained pod that is empty costs -1: it goes before any other.
func deletionCost(load int32, drained bool) string {
	if drained && load <= 0 {
		return "-1" // emptied by a drain: the first to go
	}
	return strconv.Itoa(bits.Len32(uint32(max(load, 0)))) //nolint:gosec // not negative
}

// syncDeletionCosts keeps each pod the manager runs for an Agent annotated
// with its deletion cost. Pods you run (an Agent with a selector) are
// yours to annotate.
func (r *AgentReconciler) syncDeletionCosts(ctx context.Context, agent *tetherv1alpha1.Agent, workers []workerPod, loads map[string]int32, drained map[string]bool) error {
	if agent.Spec.Template == nil {
		return nil
	}
	for _, w := range workers {
		if w.pod.DeletionTimestamp != nil {
			continue
		}
		want := deletionCost(loads[w.pod.Name], drained[w.pod.Name])
		if w.pod.Annotations[DeletionCostAnnotation] == want {
			continue
		}
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, DeletionCostAnnotation, want)
		pod := &corev1.Pod{}
		pod.Namespace, pod.Name = w.pod.Namespace, w.pod.Name
		if err := r.Patch(ctx, pod, client.RawPatch("application/merge-patch+json", patch)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("annotating pod %s with its deletion cost: %w", w.pod.Name, err)
		}
	}
	return nil
}
