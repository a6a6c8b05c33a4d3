package controllers

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

func TestSlotTracker(t *testing.T) {
	changed := make(chan event.GenericEvent, 64)
	s := newSlotTracker()
	s.changed = changed
	conv := func(name string, phase tetherv1alpha1.ConversationPhase, owner string) *tetherv1alpha1.Conversation {
		c := &tetherv1alpha1.Conversation{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
			Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "chat"}}}
		c.Status.Phase = phase
		if owner != "" {
			c.Status.Owner = &tetherv1alpha1.OwnerPod{Name: owner, UID: "uid-" + owner}
		}
		return c
	}
	told := func() int {
		n := 0
		for {
			select {
			case e := <-changed:
				if e.Object.GetNamespace() != "ns" || e.Object.GetName() != "chat" {
					t.Fatalf("told of %s/%s", e.Object.GetNamespace(), e.Object.GetName())
				}
				n++
			default:
				return n
			}
		}
	}
	state := func() string {
		var p0, p1 int32
		var holder string
		_ = s.read(func(v slotView) error {
			p0, p1 = v.load("ns", "p0", "uid-p0"), v.load("ns", "p1", "uid-p1")
			holder = v.holder("uid-a")
			return nil
		})
		return fmt.Sprintf("p0=%d p1=%d a@%q waiting=%d", p0, p1, holder, s.waitingCount("ns", "chat"))
	}
	for _, step := range []struct {
		what string
		do   func()
		want string
		told int
	}{
		{"a created: waits", func() { s.observe(conv("a", "", "")) }, `p0=0 p1=0 a@"" waiting=1`, 1},
		{"a placed on p0", func() { s.observe(conv("a", tetherv1alpha1.PhasePending, "p0")) }, `p0=1 p1=0 a@"p0" waiting=0`, 1},
		{"a runs: no change", func() { s.observe(conv("a", tetherv1alpha1.PhaseRunning, "p0")) }, `p0=1 p1=0 a@"p0" waiting=0`, 0},
		{"b on p0", func() { s.observe(conv("b", tetherv1alpha1.PhaseRunning, "p0")) }, `p0=2 p1=0 a@"p0" waiting=0`, 1},
		{"a moves to p1", func() { s.observe(conv("a", tetherv1alpha1.PhaseRescheduling, "p1")) }, `p0=1 p1=1 a@"p1" waiting=0`, 1},
		{"a on p1's namesake, another pod", func() {
			c := conv("a", tetherv1alpha1.PhaseRunning, "p1")
			c.Status.Owner.UID = "uid-p1-new"
			s.observe(c)
		}, `p0=1 p1=0 a@"p1" waiting=0`, 1},
		{"b suspended: holds nothing, waits for nothing", func() { s.observe(conv("b", tetherv1alpha1.PhaseSuspended, "")) }, `p0=0 p1=0 a@"p1" waiting=0`, 1},
		{"a finished", func() { s.observe(conv("a", tetherv1alpha1.PhaseSucceeded, "p1")) }, `p0=0 p1=0 a@"" waiting=0`, 1},
		{"c rescheduling, no owner yet", func() { s.observe(conv("c", tetherv1alpha1.PhaseRescheduling, "")) }, `p0=0 p1=0 a@"" waiting=1`, 1},
		{"c deleted", func() { s.forget("uid-c") }, `p0=0 p1=0 a@"" waiting=0`, 1},
		{"b deleted: it counted nothing", func() { s.forget("uid-b") }, `p0=0 p1=0 a@"" waiting=0`, 0},
	} {
		step.do()
		if got := state(); got != step.want {
			t.Fatalf("%s: %s, want %s", step.what, got, step.want)
		}
		if n := told(); n != step.told {
			t.Fatalf("%s: the Agent was told %d times, want %d", step.what, n, step.told)
		}
	}
	// a, finished, counts for nothing and is not kept either.
	if len(s.convs) != 0 || len(s.loads) != 0 || len(s.waiting) != 0 {
		t.Fatalf("left behind: %d conversations, %v loads, %v waiting", len(s.convs), s.loads, s.waiting)
	}
}
