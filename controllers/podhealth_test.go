package controllers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// pod builds a worker pod; options adjust it.
func pod(name string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "127.0.0.10",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-time.Hour))}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func notReadySince(at time.Time) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: metav1.NewTime(at)}}
	}
}

// lease builds the 10 s Lease of p, renewed at renewed.
func lease(p *corev1.Pod, renewed time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{
		HolderIdentity: ptr.To(string(p.UID)), RenewTime: ptr.To(metav1.NewMicroTime(renewed)), LeaseDurationSeconds: ptr.To[int32](10),
	}}
}

func TestJudgeOwner(t *testing.T) {
	healthy := pod("a")
	owner := &tetherv1alpha1.OwnerPod{Name: "a", UID: "uid-a"}
	grace := 5 * time.Second
	cases := []struct {
		name    string
		pod     *corev1.Pod
		lease   *coordinationv1.Lease
		want    ownerVerdict
		watched time.Time // when the manager last began seeing the API server
	}{
		{"healthy: look again when the Lease runs out", healthy, lease(healthy, t0.Add(-3*time.Second)),
			ownerVerdict{recheckAfter: 7 * time.Second}, time.Time{}},
		{"pod gone", nil, nil,
			ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerPodDeleted, lostAt: t0, message: "owner pod a no longer exists"}, time.Time{}},
		{"a new pod with the same name", pod("a", func(p *corev1.Pod) { p.UID = "uid-other" }), nil,
			ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerPodDeleted, lostAt: t0, message: "owner pod a no longer exists"}, time.Time{}},
		{"terminating since a second ago", pod("a", func(p *corev1.Pod) { p.DeletionTimestamp = ptr.To(metav1.NewTime(t0.Add(-time.Second))) }), nil,
			ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerPodDeleted, lostAt: t0.Add(-time.Second), message: "owner pod a is terminating"}, time.Time{}},
		{"failed", pod("a", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }), nil,
			ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerPodFailed, lostAt: t0, message: "owner pod a is Failed"}, time.Time{}},
		{"not ready within the grace: look again when it ends", pod("a", notReadySince(t0.Add(-2*time.Second))), lease(healthy, t0),
			ownerVerdict{recheckAfter: 3 * time.Second}, time.Time{}},
		{"not ready beyond the grace", pod("a", notReadySince(t0.Add(-6*time.Second))), lease(healthy, t0),
			ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerPodFailed, lostAt: t0.Add(-time.Second), message: "owner pod a not ready for more than 5s"}, time.Time{}},
		{"not ready beyond the grace, but the manager could not see the API server until 2 s ago", pod("a", notReadySince(t0.Add(-6*time.Second))), lease(healthy, t0),
			ownerVerdict{recheckAfter: 3 * time.Second}, t0.Add(-2 * time.Second)},
		{"no Lease", healthy, nil,
			ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerLeaseMissing, lostAt: t0, message: "owner pod a holds no Lease: its runtime stopped or released it"}, time.Time{}},
		{"Lease held by another incarnation", healthy, lease(pod("a", func(p *corev1.Pod) { p.UID = "uid-old" }), t0),
			ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerLeaseMissing, lostAt: t0, message: "owner pod a holds no Lease: its runtime stopped or released it"}, time.Time{}},
		{"Lease expires this instant", healthy, lease(healthy, t0.Add(-10*time.Second)),
			ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerLeaseExpired, lostAt: t0, message: "owner pod a did not renew its Lease (expired 2026-11-22T10:00:00Z)"}, time.Time{}},
		{"Lease a nanosecond from expiry", healthy, lease(healthy, t0.Add(-10*time.Second+time.Nanosecond)),
			ownerVerdict{recheckAfter: time.Nanosecond}, time.Time{}},
		{"Lease run out while the manager could not see the API server: a whole duration from then", healthy, lease(healthy, t0.Add(-30*time.Second)),
			ownerVerdict{recheckAfter: 6 * time.Second}, t0.Add(-4 * time.Second)},
		{"Lease run out, and watched a whole duration since", healthy, lease(healthy, t0.Add(-30*time.Second)),
			ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerLeaseExpired, lostAt: t0, message: "owner pod a did not renew its Lease (expired 2026-11-22T10:00:00Z)"}, t0.Add(-10 * time.Second)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := judgeOwner(owner, tc.pod, tc.lease, t0, grace, tc.watched)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(ownerVerdict{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestUsable(t *testing.T) {
	p := pod("a")
	cases := []struct {
		name  string
		pod   *corev1.Pod
		lease *coordinationv1.Lease
		why   string
	}{
		{"usable", p, lease(p, t0), ""},
		{"terminating", pod("a", func(p *corev1.Pod) { p.DeletionTimestamp = ptr.To(metav1.NewTime(t0)) }), lease(p, t0), "terminating"},
		{"pending", pod("a", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }), lease(p, t0), "phase Pending"},
		{"not ready", pod("a", notReadySince(t0)), lease(p, t0), "not ready"},
		{"no IP", pod("a", func(p *corev1.Pod) { p.Status.PodIP = "" }), lease(p, t0), "no IP"},
		{"no Lease", p, nil, "no Lease held by the runtime"},
		{"Lease expired", p, lease(p, t0.Add(-11*time.Second)), "Lease expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := usable(tc.pod, tc.lease, t0)
			if ok != (tc.why == "") || why != tc.why {
				t.Errorf("usable = %v, %q; want %q", ok, why, tc.why)
			}
		})
	}
}

func TestChoosePod(t *testing.T) {
	a, b, c := pod("a"), pod("b"), pod("c")
	cases := []struct {
		name     string
		loads    []podLoad
		capacity int32
		want     string
		loaded   bool // chooseLoadedPod, for a move off a drained pod
	}{
		{name: "least loaded", loads: []podLoad{{a, 3}, {b, 1}, {c, 2}}, capacity: 10, want: "b"},
		{name: "ties broken by name", loads: []podLoad{{c, 1}, {b, 1}, {a, 2}}, capacity: 10, want: "b"},
		{name: "full pods skipped", loads: []podLoad{{a, 2}, {b, 2}}, capacity: 2},
		{name: "the only pod with room", loads: []podLoad{{a, 2}, {b, 1}}, capacity: 2, want: "b"},
		{name: "no pods", capacity: 10},
		{name: "an empty pod first", loads: []podLoad{{a, 3}, {b, 0}, {c, 2}}, capacity: 10, want: "b"},
		{name: "a move off a drained pod: loaded pods first", loads: []podLoad{{a, 3}, {b, 0}, {c, 2}}, capacity: 10, want: "c", loaded: true},
		{name: "a move off a drained pod: an empty pod if no other has room", loads: []podLoad{{a, 3}, {b, 0}, {c, 3}}, capacity: 3, want: "b", loaded: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			choose := choosePod
			if tc.loaded {
				choose = chooseLoadedPod
			}
			if p := choose(tc.loads, tc.capacity); p != nil {
				got = p.Name
			}
			if got != tc.want {
				t.Errorf("chose %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAPIVisibility: a gap of more than four probe intervals without an
// answer moves Since to the first answer after it; answers on time, or late
// but within the bound, do not; while a gap is open, Since is now.
func TestAPIVisibility(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	v := &APIVisibility{Interval: 500 * time.Millisecond, Clock: clk}
	const now = -2 // Since is the clock's now
	steps := []struct {
		at    time.Duration
		ok    bool
		since time.Duration // -1: zero
		gap   time.Duration // the gap the probe ends
	}{
		{0, true, -1, 0},
		{500 * time.Millisecond, true, -1, 0},
		{time.Second, false, -1, 0},
		{1500 * time.Millisecond, true, -1, 0}, // one missed answer is no gap
		{2 * time.Second, false, -1, 0},
		{3 * time.Second, false, -1, 0},
		{3500 * time.Millisecond, true, -1, 0}, // slow answers, 2 s apart: no gap
		{4 * time.Second, false, -1, 0},
		{5 * time.Second, false, -1, 0},
		{5600 * time.Millisecond, false, now, 0}, // over four intervals without an answer: a gap, open
		{6 * time.Second, false, now, 0},
		{6500 * time.Millisecond, true, 6500 * time.Millisecond, 3 * time.Second},
		{7 * time.Second, true, 6500 * time.Millisecond, 0},
	}
	for _, s := range steps {
		clk.SetTime(t0.Add(s.at))
		if gap := v.observe(s.ok, clk.Now()); gap != s.gap {
			t.Fatalf("the probe at %s (ok %v) ended a gap of %s, want %s", s.at, s.ok, gap, s.gap)
		}
		want := time.Time{}
		switch {
		case s.since == now:
			want = clk.Now()
		case s.since >= 0:
			want = t0.Add(s.since)
		}
		if got := v.Since(); !got.Equal(want) {
			t.Fatalf("after the probe at %s (ok %v): since %v, want %v", s.at, s.ok, got, want)
		}
	}
	if (*APIVisibility)(nil).Since() != (time.Time{}) {
		t.Fatal("no visibility tracker: no gap")
	}
}
