package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/await"
)

// TestAgentKeepsADisruptionBudget: an Agent whose pods the manager runs
// gets a PodDisruptionBudget over them (one pod at a time by default), which
// follows spec.disruptionBudget and goes when it is disabled; an Agent of
// pods you run gets none.
func TestAgentKeepsADisruptionBudget(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "budgeted"},
		Spec: tetherv1alpha1.AgentSpec{
			Replicas: ptr.To[int32](3), ConversationsPerPod: 50, LeaseDurationSeconds: 7,
			Template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime:test"}}}},
		},
	}
	if err := k8s.Create(ctx, agent); err != nil {
		t.Fatal(err)
	}
	budget := func(want string) {
		t.Helper()
		eventually(t, 10*time.Second, "the budget "+want, func() (bool, string) {
			var pdb policyv1.PodDisruptionBudget
			err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "budgeted"}, &pdb)
			got := "none"
			if err == nil {
				got = pdb.Spec.MaxUnavailable.String()
				if !metav1.IsControlledBy(&pdb, agent) || pdb.Spec.Selector.MatchLabels[tetherv1alpha1.AgentLabel] != "budgeted" {
					got = fmt.Sprintf("wrong owner or selector: %+v %+v", pdb.OwnerReferences, pdb.Spec.Selector)
				}
			} else if !apierrors.IsNotFound(err) {
				got = err.Error()
			}
			return got == want, got
		})
	}
	budget("1")

	patch := func(spec string) {
		t.Helper()
		if err := k8s.Patch(ctx, agent, client.RawPatch("application/merge-patch+json", []byte(spec))); err != nil {
			t.Fatal(err)
		}
	}
	patch(`{"spec":{"disruptionBudget":{"maxUnavailable":"50%"}}}`)
	budget("50%")
	patch(`{"spec":{"disruptionBudget":{"disabled":true}}}`)
	budget("none")
	patch(`{"spec":{"disruptionBudget":null}}`)
	budget("1")

	// Pods you run (a selector, no template): your budget, not ours.
	own := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "yours"},
		Spec: tetherv1alpha1.AgentSpec{
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: "yours"}},
			ConversationsPerPod: 50, LeaseDurationSeconds: 7, RuntimePort: 8080,
		},
	}
	if err := k8s.Create(ctx, own); err != nil {
		t.Fatal(err)
	}
	await.Stays(t, 2*time.Second, "no budget for an Agent of pods you run", func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "yours"}, &policyv1.PodDisruptionBudget{}))
	})
}

// TestAgentPodsCarryTheirDeletionCost: the pods the manager runs for an
// Agent carry controller.kubernetes.io/pod-deletion-cost from their load (0
// when empty), so a ReplicaSet scaling the Agent down removes its empty pods
// first and moves no conversation.
func TestAgentPodsCarryTheirDeletionCost(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "costly"},
		Spec: tetherv1alpha1.AgentSpec{
			Replicas: ptr.To[int32](2), ConversationsPerPod: 3, LeaseDurationSeconds: 7, RuntimePort: 8080,
			Template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime:test"}}}},
		},
	}
	if err := k8s.Create(ctx, agent); err != nil {
		t.Fatal(err)
	}
	// No kubelet here: the Deployment's pods are made by hand.
	a := startPod(t, ns, "costly", "costly-a", "127.0.9.1", 30)
	b := startPod(t, ns, "costly", "costly-b", "127.0.9.2", 30)
	costs := func(want map[string]string) {
		t.Helper()
		eventually(t, 10*time.Second, fmt.Sprintf("deletion costs %v", want), func() (bool, string) {
			got := map[string]string{}
			for _, w := range []workerPod{a, b} {
				var pod corev1.Pod
				if err := k8s.Get(ctx, client.ObjectKeyFromObject(w.pod), &pod); err != nil {
					return false, err.Error()
				}
				got[pod.Name] = pod.Annotations["controller.kubernetes.io/pod-deletion-cost"]
			}
			return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprint(got)
		})
	}
	costs(map[string]string{"costly-a": "0", "costly-b": "0"})
	for i := range 4 {
		newConversation(t, ns, fmt.Sprintf("c-%d", i), "costly")
	}
	eventually(t, 10*time.Second, "4 conversations placed", func() (bool, string) {
		loads := loadsByPod(t, ns)
		return loads["costly-a"]+loads["costly-b"] == 4, fmt.Sprint(loads)
	})
	loads := loadsByPod(t, ns)
	want := map[string]string{}
	for _, name := range []string{"costly-a", "costly-b"} {
		want[name] = fmt.Sprint(map[int]int{0: 0, 1: 1, 2: 2, 3: 2}[loads[name]])
	}
	costs(want)
}

// TestAgentKeepsFreeSlots: with spec.autoscaling the Agent's Deployment is
// sized to its load plus 20 free slots, up as conversations arrive and down
// as they leave; a buffer the API server cannot read is refused.
func TestAgentKeepsFreeSlots(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "elastic"},
		Spec: tetherv1alpha1.AgentSpec{
			ConversationsPerPod: 10, LeaseDurationSeconds: 7, RuntimePort: 8080,
			Autoscaling: &tetherv1alpha1.AgentAutoscaling{MinReplicas: 1, MaxReplicas: 30, FreeSlots: intstr.FromInt32(20)},
			Template:    &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime:test"}}}},
		},
	}
	if err := k8s.Create(ctx, agent); err != nil {
		t.Fatal(err)
	}
	replicas := func(want int32) {
		t.Helper()
		eventually(t, 15*time.Second, fmt.Sprintf("%d replicas", want), func() (bool, string) {
			var d appsv1.Deployment
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "elastic"}, &d); err != nil {
				return false, err.Error()
			}
			return *d.Spec.Replicas == want, fmt.Sprint(*d.Spec.Replicas)
		})
	}
	replicas(2) // nothing held: 20 free slots are two pods
	// No kubelet here: the Deployment's pods are made by hand.
	for i := range 3 {
		startPod(t, ns, "elastic", fmt.Sprintf("elastic-%d", i), fmt.Sprintf("127.0.10.%d", i+1), 30)
	}
	for i := range 25 {
		newConversation(t, ns, fmt.Sprintf("c-%02d", i), "elastic")
	}
	eventually(t, 15*time.Second, "25 conversations placed", func() (bool, string) {
		total := 0
		for _, n := range loadsByPod(t, ns) {
			total += n
		}
		return total == 25, fmt.Sprint(total)
	})
	replicas(5) // 25 held + 20 free = 45 slots
	for i := range 25 {
		conv := &tetherv1alpha1.Conversation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("c-%02d", i)}}
		if err := k8s.Delete(ctx, conv); err != nil {
			t.Fatal(err)
		}
	}
	replicas(2)

	bad := agent.DeepCopy()
	bad.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: "bad"}
	bad.Spec.Autoscaling = &tetherv1alpha1.AgentAutoscaling{MinReplicas: 1, MaxReplicas: 3, FreeSlots: intstr.FromString("150%")}
	if err := k8s.Create(ctx, bad); !apierrors.IsInvalid(err) {
		t.Fatalf("a buffer of 150%%: %v, want Invalid", err)
	}
}
