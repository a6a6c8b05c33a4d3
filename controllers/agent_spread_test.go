package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/await"
)

// TestAgentPodsSpreadAgain: an Agent whose two pods ended up on one node
// (the other was lost a while and came back) has one of them drained and
// evicted, through its disruption budget, for the scheduler to place its
// replacement by the spread; and a replacement put back on the crowded node
// does not start a loop.
func TestAgentPodsSpreadAgain(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	longAgo := metav1.NewTime(time.Now().Add(-time.Hour))
	for _, name := range []string{ns + "-a", ns + "-b"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := k8s.Create(ctx, node); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), node) })
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastTransitionTime: longAgo, LastHeartbeatTime: longAgo}}
		if err := k8s.Status().Update(ctx, node); err != nil {
			t.Fatal(err)
		}
		// The node lifecycle controller, which envtest does not run: a
		// Ready node loses the not-ready taint it was admitted with.
		node.Spec.Taints = nil
		if err := k8s.Update(ctx, node); err != nil {
			t.Fatal(err)
		}
	}
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "spread"},
		Spec: tetherv1alpha1.AgentSpec{
			Replicas: ptr.To[int32](2), ConversationsPerPod: 10, LeaseDurationSeconds: 7,
			Template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime:test"}}}},
		},
	}
	if err := k8s.Create(ctx, agent); err != nil {
		t.Fatal(err)
	}
	// The disruption controller, which envtest does not run: the budget
	// allows one pod to go.
	eventually(t, 10*time.Second, "the Agent's disruption budget", func() (bool, string) {
		var pdb policyv1.PodDisruptionBudget
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "spread"}, &pdb); err != nil {
			return false, err.Error()
		}
		pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, DisruptionsAllowed: 1, CurrentHealthy: 2, DesiredHealthy: 1, ExpectedPods: 2}
		if err := k8s.Status().Update(ctx, &pdb); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	// Both pods on node a, ready for an hour, as after a loss of node b.
	onNode := func(name, node string) {
		t.Helper()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{tetherv1alpha1.AgentLabel: "spread"}},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime:test"}}},
		}
		if err := k8s.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
				return err
			}
			pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1",
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: longAgo}}}
			return k8s.Status().Update(ctx, pod)
		}); err != nil {
			t.Fatal(err)
		}
	}
	onNode("p1", ns+"-a")
	onNode("p2", ns+"-a")

	state := func() string {
		var pods corev1.PodList
		if err := k8s.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return err.Error()
		}
		var out []string
		for _, p := range pods.Items {
			s := p.Name
			if v, ok := p.Annotations[tetherv1alpha1.DrainAnnotation]; ok {
				s += " drained (" + v + ")"
			}
			if p.DeletionTimestamp != nil {
				s += " evicted"
			}
			out = append(out, s)
		}
		return strings.Join(out, ", ")
	}
	eventually(t, 20*time.Second, "one of the two drained for a rebalance, then evicted", func() (bool, string) {
		s := state()
		return strings.Contains(s, "p1 drained (rebalance since ") && strings.Contains(s, "evicted") && !strings.Contains(s, "p2 drained"), s
	})
	var pdb policyv1.PodDisruptionBudget
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "spread"}, &pdb); err != nil {
		t.Fatal(err)
	}
	if _, ok := pdb.Status.DisruptedPods["p1"]; !ok {
		t.Errorf("the budget does not record the eviction of p1: %+v", pdb.Status)
	}

	// Its replacement lands on node a again (no room on b, say): the
	// rebalance is not tried again right away.
	onNode("p3", ns+"-a")
	await.Stays(t, 3*time.Second, "no second rebalance within rebalanceEvery", func() bool {
		s := state()
		return !strings.Contains(s, "p2 drained") && !strings.Contains(s, "p3 drained")
	})
	t.Logf("pods: %s", state())
}
