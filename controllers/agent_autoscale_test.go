package controllers

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

func TestAutoscaledReplicas(t *testing.T) {
	pods := func(loads ...int32) ([]workerPod, map[string]int32) {
		var ws []workerPod
		m := map[string]int32{}
		for i, n := range loads {
			name := fmt.Sprintf("p%d", i)
			ws = append(ws, workerPod{pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}})
			m[name] = n
		}
		return ws, m
	}
	for _, tc := range []struct {
		name     string
		min, max int32
		free     intstr.IntOrString
		loads    []int32
		want     int32
	}{
		{"empty: the buffer alone", 1, 30, intstr.FromInt32(20), nil, 2},
		{"empty, no buffer: min", 1, 30, intstr.FromInt32(0), nil, 1},
		{"load plus buffer", 1, 30, intstr.FromInt32(20), []int32{10, 5}, 4},
		{"capped at max", 1, 3, intstr.FromInt32(20), []int32{10, 10}, 3},
		{"never below the pods that hold conversations", 1, 30, intstr.FromInt32(0), []int32{1, 1, 1, 0}, 3},
		{"above max rather than drop a loaded pod", 1, 2, intstr.FromInt32(0), []int32{1, 1, 1}, 3},
		{"a share free: 150 of 10 a pod, 25% free", 1, 30, intstr.FromString("25%"), []int32{10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10}, 20},
		{"a share free, nothing held: min", 2, 30, intstr.FromString("50%"), nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := &tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{ConversationsPerPod: 10, Template: &corev1.PodTemplateSpec{},
				Autoscaling: &tetherv1alpha1.AgentAutoscaling{MinReplicas: tc.min, MaxReplicas: tc.max, FreeSlots: tc.free}}}
			ws, loads := pods(tc.loads...)
			if got := autoscaledReplicas(agent, ws, loads); got == nil || *got != tc.want {
				t.Fatalf("replicas %v, want %d", got, tc.want)
			}
		})
	}
	if autoscaledReplicas(&tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{Template: &corev1.PodTemplateSpec{}}}, nil, nil) != nil {
		t.Fatal("an Agent without autoscaling got replicas")
	}
}
