package controllers

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// spreadOverNodes gives an Agent's pods a topology spread over nodes unless
// its template says where they go (a spread constraint or any affinity of
// its own): a node lost then takes at most its share of the Agent's
// conversations, and the others have pods to move them to. The constraint
// is soft (ScheduleAnyway): a single-node cluster still runs every replica.
// It holds only when pods are scheduled; agent_rebalance.go restores it
// after a node came back.
func spreadOverNodes(agent *tetherv1alpha1.Agent, spec *corev1.PodSpec) {
	if placesItsOwnPods(spec) {
		return
	}
	spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew:           1,
		TopologyKey:       corev1.LabelHostname,
		WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: agent.Name}},
	}}
}
