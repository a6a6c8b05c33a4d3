package controllers

import (
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// CacheOptions limits the manager's informers to the objects Tether cares
// about: worker pods, their Leases, Agent Deployments and their
// PodDisruptionBudgets all carry the
// tether.dev/agent label, so a large cluster's other pods and Leases are
// never held in memory.
func CacheOptions() cache.Options {
	req, err := labels.NewRequirement(tetherv1alpha1.AgentLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key is always valid
	}
	tethered := labels.NewSelector().Add(*req)
	return cache.Options{
		// No controller reads managed fields, and every write is an
		// update that leaves them as they are: they would be the
		// largest part of each cached Conversation.
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                   {Label: tethered},
			&coordinationv1.Lease{}:         {Label: tethered},
			&appsv1.Deployment{}:            {Label: tethered},
			&policyv1.PodDisruptionBudget{}: {Label: tethered},
			// Nodes only for rebalancing an Agent's pods over them.
			&corev1.Node{}: {Transform: trimNode},
		}}
}

// trimNode keeps what deciding whether an Agent's pods can run on a node
// needs: its name, labels, taints, whether it is cordoned and its Ready
// condition. A node's images, addresses and other conditions are most of
// it, and they change on every kubelet heartbeat.
func trimNode(obj any) (any, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	trimmed := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node.Name, UID: node.UID, ResourceVersion: node.ResourceVersion,
			Labels: node.Labels, DeletionTimestamp: node.DeletionTimestamp},
		Spec: corev1.NodeSpec{Unschedulable: node.Spec.Unschedulable, Taints: node.Spec.Taints},
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			trimmed.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime}}
		}
	}
	return trimmed, nil
}
