package controllers

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// workersWith makes pods p0, p1, ... holding loads; drained names the pods
// annotated tether.dev/drain, with the value the manager writes.
func workersWith(loads []int32, drained ...int) ([]workerPod, map[string]int32) {
	var ws []workerPod
	m := map[string]int32{}
	for i, n := range loads {
		name := fmt.Sprintf("p%d", i)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
		for _, d := range drained {
			if d == i {
				pod.Annotations = map[string]string{tetherv1alpha1.DrainAnnotation: scaleDownDrain + "2026-12-02T12:00:00Z"}
			}
		}
		ws = append(ws, workerPod{pod: pod})
		m[name] = n
	}
	return ws, m
}

func autoscaled(min, max int32, free intstr.IntOrString) *tetherv1alpha1.Agent {
	return &tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{ConversationsPerPod: 10, Template: &corev1.PodTemplateSpec{},
		Autoscaling: &tetherv1alpha1.AgentAutoscaling{MinReplicas: min, MaxReplicas: max, FreeSlots: free}}}
}

func TestAutoscaledReplicas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max int32
		free     intstr.IntOrString
		loads    []int32
		waiting  int32
		want     int32
	}{
		{"empty: the buffer alone", 1, 30, intstr.FromInt32(20), nil, 0, 2},
		{"empty, no buffer: min", 1, 30, intstr.FromInt32(0), nil, 0, 1},
		{"load plus buffer", 1, 30, intstr.FromInt32(20), []int32{10, 5}, 0, 4},
		{"capped at max", 1, 3, intstr.FromInt32(20), []int32{10, 10}, 0, 3},
		{"never below the pods that hold conversations", 1, 30, intstr.FromInt32(0), []int32{1, 1, 1, 0}, 0, 3},
		{"above max rather than drop a loaded pod", 1, 2, intstr.FromInt32(0), []int32{1, 1, 1}, 0, 3},
		{"a share free: 150 of 10 a pod, 25% free", 1, 30, intstr.FromString("25%"), []int32{10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10}, 0, 20},
		{"a share free, nothing held: min", 2, 30, intstr.FromString("50%"), nil, 0, 2},
		{"no buffer: the pods grow for conversations waiting for a slot", 1, 30, intstr.FromInt32(0), []int32{10}, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, loads := workersWith(tc.loads)
			if got := planScale(autoscaled(tc.min, tc.max, tc.free), ws, loads, tc.waiting).replicas; got != tc.want {
				t.Fatalf("replicas %d, want %d", got, tc.want)
			}
		})
	}
	fixed := &tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{Replicas: ptr.To[int32](1), ConversationsPerPod: 10, Template: &corev1.PodTemplateSpec{}}}
	ws, loads := workersWith([]int32{3, 2, 0})
	if got := planScale(fixed, ws, loads, 0).replicas; got != 2 {
		t.Fatalf("spec.replicas 1 with two loaded pods: replicas %d, want 2 (the loaded pods stay until drained)", got)
	}
	if plan := planScale(&tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{Replicas: ptr.To[int32](1)}}, ws, loads, 0); plan.replicas != 0 || plan.drain != nil {
		t.Fatalf("an Agent of pods you run got a plan: %+v", plan)
	}
}

func TestPlanDrains(t *testing.T) {
	userDrained := func(ws []workerPod, i int) []workerPod {
		ws[i].pod.Annotations = map[string]string{tetherv1alpha1.DrainAnnotation: "kubectl"}
		return ws
	}
	for _, tc := range []struct {
		name           string
		free           int32
		loads          []int32
		drained        []int
		user           int // a pod the user drained, or -1
		drain, undrain string
		replicas       int32
	}{
		{name: "load fits fewer pods: the least loaded drains", loads: []int32{5, 2, 4}, user: -1, drain: "[p1]", undrain: "[]", replicas: 3},
		{name: "ties go by name", loads: []int32{2, 2, 4}, user: -1, drain: "[p0]", undrain: "[]", replicas: 3},
		{name: "one at a time", loads: []int32{5, 2, 4}, drained: []int{1}, user: -1, drain: "[]", undrain: "[]", replicas: 3},
		{name: "a drained pod emptied: the next one, once it is gone", loads: []int32{5, 0, 4}, drained: []int{1}, user: -1, drain: "[]", undrain: "[]", replicas: 2},
		{name: "empty pods go first, then drains", loads: []int32{5, 0, 4, 1}, user: -1, drain: "[]", undrain: "[]", replicas: 3},
		{name: "no room on the others: nothing drains", loads: []int32{10, 9, 9}, user: -1, drain: "[]", undrain: "[]", replicas: 3},
		{name: "the buffer needs them all: nothing drains", free: 15, loads: []int32{5, 2, 4}, user: -1, drain: "[]", undrain: "[]", replicas: 3},
		{name: "load came back: a loaded drain is called off", free: 15, loads: []int32{5, 2, 4}, drained: []int{1}, user: -1, drain: "[]", undrain: "[p1]", replicas: 3},
		{name: "an emptied drained pod that is going stays drained", free: 5, loads: []int32{5, 0, 4, 0}, drained: []int{1}, user: -1, drain: "[]", undrain: "[]", replicas: 2},
		{name: "an emptied drained pod that is wanted again is called back", free: 25, loads: []int32{5, 0, 4}, drained: []int{1}, user: -1, drain: "[]", undrain: "[p1]", replicas: 4},
		{name: "a user's drain is never called off", free: 25, loads: []int32{5, 2, 4}, user: 1, drain: "[]", undrain: "[]", replicas: 4},
		{name: "a user's drain in progress holds the next", loads: []int32{5, 2, 4}, user: 0, drain: "[]", undrain: "[]", replicas: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, loads := workersWith(tc.loads, tc.drained...)
			if tc.user >= 0 {
				ws = userDrained(ws, tc.user)
			}
			plan := planScale(autoscaled(1, 30, intstr.FromInt32(tc.free)), ws, loads, 0)
			if got := fmt.Sprint(plan.drain); got != tc.drain {
				t.Errorf("drain %s, want %s", got, tc.drain)
			}
			if got := fmt.Sprint(plan.undrain); got != tc.undrain {
				t.Errorf("undrain %s, want %s", got, tc.undrain)
			}
			if plan.replicas != tc.replicas {
				t.Errorf("replicas %d, want %d", plan.replicas, tc.replicas)
			}
		})
	}
}

func TestDeletionCost(t *testing.T) {
	for _, tc := range []struct {
		load    int32
		drained bool
		want    string
	}{{0, false, "0"}, {1, false, "1"}, {3, false, "2"}, {4, false, "3"}, {0, true, "-1"}, {3, true, "2"}} {
		if got := deletionCost(tc.load, tc.drained); got != tc.want {
			t.Errorf("deletionCost(%d, %v) = %s, want %s", tc.load, tc.drained, got, tc.want)
		}
	}
}
