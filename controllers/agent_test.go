package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/controllers"
)

func TestAgentRunsItsPodsAsADeployment(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvals"},
		Spec: tetherv1alpha1.AgentSpec{
			Replicas:             ptr.To[int32](2),
			ConversationsPerPod:  50,
			LeaseDurationSeconds: 7,
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"team": "payments"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "runtime", Image: "tether-runtime:test",
					// A variable the user set is left alone.
					Env: []corev1.EnvVar{{Name: controllers.EnvRuntimePort, Value: "9000"}},
				}}},
			},
		},
	}
	if err := k8s.Create(ctx, agent); err != nil {
		t.Fatal(err)
	}
	deployment := &appsv1.Deployment{}
	eventually(t, 10*time.Second, "the Agent's Deployment", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "approvals"}, deployment)
		return err == nil, fmt.Sprint(err)
	})
	if !metav1.IsControlledBy(deployment, agent) {
		t.Errorf("Deployment not controlled by its Agent: %+v", deployment.OwnerReferences)
	}
	if *deployment.Spec.Replicas != 2 {
		t.Errorf("replicas %d, want 2", *deployment.Spec.Replicas)
	}
	labels := deployment.Spec.Template.Labels
	if labels[tetherv1alpha1.AgentLabel] != "approvals" || labels["team"] != "payments" {
		t.Errorf("pod labels %v lack the agent label or the user's own", labels)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range deployment.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e
	}
	for name, fieldPath := range map[string]string{
		controllers.EnvPodName: "metadata.name", controllers.EnvPodNamespace: "metadata.namespace",
		controllers.EnvPodIP: "status.podIP", controllers.EnvPodUID: "metadata.uid",
	} {
		if e, ok := env[name]; !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != fieldPath {
			t.Errorf("%s: %+v, want the downward API's %s", name, e, fieldPath)
		}
	}
	if env[controllers.EnvAgent].Value != "approvals" || env[controllers.EnvLeaseDurationSeconds].Value != "7" || env[controllers.EnvRuntimePort].Value != "9000" {
		t.Errorf("env %+v", env)
	}

	// Scaling the Agent (what kubectl scale and an HPA do through the scale
	// subresource) scales the Deployment.
	// A merge patch, as kubectl scale sends: an update could conflict with
	// the controller's concurrent status write.
	var scaled tetherv1alpha1.Agent
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(agent), &scaled); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(scaled.DeepCopy())
	scaled.Spec.Replicas = ptr.To[int32](4)
	if err := k8s.Patch(ctx, &scaled, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the Deployment scaled to 4", func() (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(deployment), deployment); err != nil {
			return false, err.Error()
		}
		return *deployment.Spec.Replicas == 4, fmt.Sprint(*deployment.Spec.Replicas)
	})

	// Pods appear (the test stands in for the Deployment controller and the
	// kubelet); the status counts those that are ready with a live Lease.
	startPod(t, ns, "approvals", "approvals-a", "127.0.9.1", 300)
	startPod(t, ns, "approvals", "approvals-b", "127.0.9.2", 300)
	createPod(t, ns, "approvals", "approvals-c", "127.0.9.3") // starting, not ready
	conv := newConversation(t, ns, "c", "approvals")
	waitOwned(t, conv)
	eventually(t, 10*time.Second, "the Agent's status", func() (bool, string) {
		var got tetherv1alpha1.Agent
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(agent), &got); err != nil {
			return false, err.Error()
		}
		s := got.Status
		ready := meta.FindStatusCondition(s.Conditions, string(tetherv1alpha1.ConditionReady))
		return s.Replicas == 3 && s.ReadyReplicas == 2 && s.Conversations == 1 && s.Capacity == 100 && s.FreeCapacity == 99 &&
			s.Selector == tetherv1alpha1.AgentLabel+"=approvals" && ready != nil && ready.Status == metav1.ConditionTrue &&
			s.ObservedGeneration == got.Generation, fmt.Sprintf("%+v", s)
	})
}

func TestAgentWithoutReadyPodsSaysWhy(t *testing.T) {
	ns := newNamespace(t)
	agent := newSelectorAgent(t, ns, "quiet", 10)
	w := createPod(t, ns, "quiet", "quiet-a", "127.0.9.4")
	setPodReady(t, w.pod, true) // ready, but its runtime holds no Lease
	eventually(t, 10*time.Second, "Ready false with the reason", func() (bool, string) {
		var got tetherv1alpha1.Agent
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(agent), &got); err != nil {
			return false, err.Error()
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, string(tetherv1alpha1.ConditionReady))
		return ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == string(tetherv1alpha1.ReasonNoReadyPods) &&
			ready.Message == "none of 1 worker pods can take conversations (1 no Lease held by the runtime)", fmt.Sprintf("%+v", got.Status)
	})
	// No Deployment for an Agent whose pods the user runs.
	var list appsv1.DeploymentList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("a selector Agent got a Deployment: %s", list.Items[0].Name)
	}
}
