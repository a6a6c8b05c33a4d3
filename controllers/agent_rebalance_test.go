package controllers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

func TestPlanRebalance(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	longAgo := now.Add(-time.Hour)
	node := func(name string, mutate ...func(*corev1.Node)) corev1.Node {
		n := corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": "agents"}},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(longAgo),
			}}},
		}
		for _, m := range mutate {
			m(&n)
		}
		return n
	}
	readySince := func(at time.Time) func(*corev1.Node) {
		return func(n *corev1.Node) { n.Status.Conditions[0].LastTransitionTime = metav1.NewTime(at) }
	}
	pod := func(name, on string, mutate ...func(*corev1.Pod)) workerPod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{tetherv1alpha1.AgentLabel: "spread"}},
			Spec:       corev1.PodSpec{NodeName: on},
			Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{
				Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(longAgo),
			}}},
		}
		for _, m := range mutate {
			m(p)
		}
		return workerPod{pod: p}
	}
	drained := func(value string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Annotations = map[string]string{tetherv1alpha1.DrainAnnotation: value}
		}
	}
	agent := func(mutate ...func(*corev1.PodSpec)) *tetherv1alpha1.Agent {
		a := &tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{Template: &corev1.PodTemplateSpec{}}}
		for _, m := range mutate {
			m(&a.Spec.Template.Spec)
		}
		return a
	}
	since := func(d time.Duration) string { return rebalanceDrain + now.Add(-d).Format(time.RFC3339) }
	twoNodes := []corev1.Node{node("a"), node("b")}
	crowded := []workerPod{pod("p1", "a"), pod("p2", "a")}
	loads := map[string]int32{"p1": 3, "p2": 1}

	cases := []struct {
		name    string
		agent   *tetherv1alpha1.Agent
		workers []workerPod
		loads   map[string]int32
		waiting int32
		nodes   []corev1.Node
		last    time.Time
		want    rebalanceStep
	}{
		{name: "spread already", agent: agent(), workers: []workerPod{pod("p1", "a"), pod("p2", "b")}, loads: loads, nodes: twoNodes},
		{name: "two on one node, none on the other: the emptier drains", agent: agent(), workers: crowded, loads: loads, nodes: twoNodes,
			want: rebalanceStep{drain: "p2"}},
		{name: "a skew of one is within the spread", agent: agent(), workers: []workerPod{pod("p1", "a"), pod("p2", "a"), pod("p3", "b")}, loads: loads, nodes: twoNodes},
		{name: "one node only", agent: agent(), workers: crowded, loads: loads, nodes: []corev1.Node{node("a")}},
		{name: "a node Ready only just: look again when it has settled", agent: agent(), workers: crowded, loads: loads,
			nodes: []corev1.Node{node("a"), node("b", readySince(now.Add(-10*time.Second)))}, want: rebalanceStep{recheck: 20 * time.Second}},
		{name: "a pod ready only just", agent: agent(), workers: []workerPod{pod("p1", "a"), pod("p2", "a", func(p *corev1.Pod) {
			p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(now.Add(-5 * time.Second))
		})}, loads: loads, nodes: twoNodes, want: rebalanceStep{recheck: 25 * time.Second}},
		{name: "a pod not ready", agent: agent(), workers: []workerPod{pod("p1", "a"), pod("p2", "a", func(p *corev1.Pod) {
			p.Status.Conditions[0].Status = corev1.ConditionFalse
		})}, loads: loads, nodes: twoNodes},
		{name: "a pod on a node that is not Ready: wait for it to settle", agent: agent(), workers: []workerPod{pod("p1", "a"), pod("p2", "a"), pod("p3", "c")},
			loads: loads, nodes: []corev1.Node{node("a"), node("b"), node("c", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown })}},
		{name: "the other node cordoned", agent: agent(), workers: crowded, loads: loads,
			nodes: []corev1.Node{node("a"), node("b", func(n *corev1.Node) { n.Spec.Unschedulable = true })}},
		{name: "the other node tainted", agent: agent(), workers: crowded, loads: loads,
			nodes: []corev1.Node{node("a"), node("b", func(n *corev1.Node) {
				n.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
			})}},
		{name: "the other node tainted, and tolerated", agent: agent(func(s *corev1.PodSpec) {
			s.Tolerations = []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}
		}), workers: crowded, loads: loads, nodes: []corev1.Node{node("a"), node("b", func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		})}, want: rebalanceStep{drain: "p2"}},
		{name: "the other node outside the node selector", agent: agent(func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"pool": "agents"} }),
			workers: crowded, loads: loads, nodes: []corev1.Node{node("a"), node("b", func(n *corev1.Node) { n.Labels = nil })}},
		{name: "the template places its pods", agent: agent(func(s *corev1.PodSpec) { s.Affinity = &corev1.Affinity{} }),
			workers: crowded, loads: loads, nodes: twoNodes},
		{name: "the template's own spread over nodes", agent: agent(hostSpreadOf(1, "spread")), workers: crowded, loads: loads, nodes: twoNodes,
			want: rebalanceStep{drain: "p2"}},
		{name: "the template's own spread, a skew of two allowed", agent: agent(hostSpreadOf(2, "spread")), workers: crowded, loads: loads, nodes: twoNodes},
		{name: "the template's spread selects other pods", agent: agent(hostSpreadOf(1, "other")), workers: crowded, loads: loads, nodes: twoNodes},
		{name: "the template's spread over zones", agent: agent(func(s *corev1.PodSpec) {
			hostSpreadOf(1, "spread")(s)
			s.TopologySpreadConstraints[0].TopologyKey = corev1.LabelTopologyZone
		}), workers: crowded, loads: loads, nodes: twoNodes},
		{name: "pods the user runs", agent: &tetherv1alpha1.Agent{}, workers: crowded, loads: loads, nodes: twoNodes},
		{name: "conversations wait for a slot", agent: agent(), workers: crowded, loads: loads, waiting: 1, nodes: twoNodes},
		{name: "rebalanced a minute ago", agent: agent(), workers: crowded, loads: loads, nodes: twoNodes, last: now.Add(-time.Minute)},
		{name: "rebalanced long ago", agent: agent(), workers: crowded, loads: loads, nodes: twoNodes, last: now.Add(-time.Hour),
			want: rebalanceStep{drain: "p2"}},
		{name: "another drain under way", agent: agent(), workers: []workerPod{pod("p1", "a"), pod("p2", "a", drained("by hand"))}, loads: loads, nodes: twoNodes},
		{name: "a rebalance drain still moving conversations", agent: agent(), workers: []workerPod{pod("p1", "a"), pod("p2", "a", drained(since(time.Minute)))},
			loads: loads, nodes: twoNodes},
		{name: "a rebalance drain done: evict", agent: agent(), workers: []workerPod{pod("p1", "a"), pod("p2", "a", drained(since(time.Minute)))},
			loads: map[string]int32{"p1": 4}, nodes: twoNodes, want: rebalanceStep{evict: "p2"}},
		{name: "a rebalance drain for too long: called off", agent: agent(), workers: []workerPod{pod("p1", "a"), pod("p2", "a", drained(since(time.Hour)))},
			loads: loads, nodes: twoNodes, want: rebalanceStep{undrain: "p2"}},
		{name: "a rebalance drain while conversations wait: called off", agent: agent(), workers: []workerPod{pod("p1", "a"), pod("p2", "a", drained(since(time.Minute)))},
			loads: loads, waiting: 2, nodes: twoNodes, want: rebalanceStep{undrain: "p2"}},
		{name: "a terminating pod does not count", agent: agent(), workers: []workerPod{pod("p1", "a"), pod("p2", "a", func(p *corev1.Pod) {
			p.DeletionTimestamp = &metav1.Time{Time: now}
		})}, loads: loads, nodes: twoNodes},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := planRebalance(tc.agent, tc.workers, tc.loads, tc.waiting, tc.nodes, now, tc.last)
			got.why = ""
			if got != tc.want {
				t.Fatalf("planRebalance = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// hostSpreadOf is a template's own spread of the Agent's pods over nodes.
func hostSpreadOf(maxSkew int32, agent string) func(*corev1.PodSpec) {
	return func(s *corev1.PodSpec) {
		s.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew: maxSkew, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: agent}},
		}}
	}
}
