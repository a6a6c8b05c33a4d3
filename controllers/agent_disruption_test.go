package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
