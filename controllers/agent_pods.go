package controllers

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// agentPodSelector selects an Agent's worker pods: for an Agent with a
// template, the tether.dev/agent label Tether puts on them; for an Agent with
// a selector, that selector (the pods carry the tether.dev/agent label as
// well, which is what the controller's cache watches).
func agentPodSelector(agent *tetherv1alpha1.Agent) (labels.Selector, error) {
	if agent.Spec.Selector == nil {
		return labels.SelectorFromSet(labels.Set{tetherv1alpha1.AgentLabel: agent.Name}), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(agent.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("spec.selector: %w", err)
	}
	return sel, nil
}

// workerPod is a worker pod and its Lease (nil when it has none).
type workerPod struct {
	pod   *corev1.Pod
	lease *coordinationv1.Lease
}

// listWorkerPods returns an Agent's pods with their Leases, from the cache.
// The objects are shared with the cache and must not be modified.
func listWorkerPods(ctx context.Context, c client.Reader, agent *tetherv1alpha1.Agent) ([]workerPod, error) {
	sel, err := agentPodSelector(agent)
	if err != nil {
		return nil, err
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(agent.Namespace), client.MatchingLabelsSelector{Selector: sel}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var leases coordinationv1.LeaseList
	if err := c.List(ctx, &leases, client.InNamespace(agent.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	byName := make(map[string]*coordinationv1.Lease, len(leases.Items))
	for i := range leases.Items {
		byName[leases.Items[i].Name] = &leases.Items[i]
	}
	out := make([]workerPod, 0, len(pods.Items))
	for i := range pods.Items {
		out = append(out, workerPod{pod: &pods.Items[i], lease: byName[pods.Items[i].Name]})
	}
	return out, nil
}

// getPodAndLease reads a pod and its Lease from the cache; either is nil when
// missing.
func getPodAndLease(ctx context.Context, c client.Reader, namespace, name string) (*corev1.Pod, *coordinationv1.Lease, error) {
	pod := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pod); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, nil, err
		}
		return nil, nil, nil
	}
	lease := &coordinationv1.Lease{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, lease); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, nil, err
		}
		lease = nil
	}
	return pod, lease, nil
}
