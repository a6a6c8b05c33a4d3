package chaos

import (
	"testing"
	"time"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// TestResumed: an owner that comes back after a fault and serves its
// conversation again, before any other pod takes it, resumed it.
func TestResumed(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	const (
		running  = tetherv1alpha1.PhaseRunning
		awaiting = tetherv1alpha1.PhaseAwaitingInput
		moving   = tetherv1alpha1.PhaseRescheduling
	)
	o := func(at time.Time, owner string, epoch int64, phase tetherv1alpha1.ConversationPhase) ownership {
		return ownership{at: at, owner: owner, epoch: epoch, phase: phase}
	}
	// again is o written again, unchanged, at last.
	again := func(o ownership, last time.Time) ownership { o.last = last; return o }
	for _, tc := range []struct {
		name string
		line []ownership
		want bool
	}{
		{"served again by its owner", []ownership{o(at(0), "a", 3, awaiting), o(at(9), "a", 3, running)}, true},
		{"moved first", []ownership{o(at(0), "a", 3, awaiting), o(at(5), "", 4, moving), o(at(6), "b", 4, running), o(at(9), "a", 3, running)}, false},
		{"its owner wrote the same state again after the fault", []ownership{again(o(at(0), "a", 3, running), at(9))}, true},
		{"the same state again, then moved", []ownership{again(o(at(0), "a", 3, running), at(9)), o(at(10), "b", 4, moving)}, true},
		{"the same state again, only before the fault ended", []ownership{again(o(at(0), "a", 3, running), at(7))}, false},
		{"nothing after the fault", []ownership{o(at(0), "a", 3, awaiting)}, false},
		{"its owner's write before the fault ended", []ownership{o(at(0), "a", 3, awaiting), o(at(2), "a", 3, running)}, false},
		{"placed back on its owner at a new epoch", []ownership{o(at(0), "a", 3, awaiting), o(at(9), "a", 4, running)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wt := &ownerHistory{lines: map[string][]ownership{"c": tc.line}}
			// The fault from 1 s to 8 s.
			if got := wt.resumed("c", at(1), at(8), "a", 3); got != tc.want {
				t.Errorf("resumed = %v, want %v", got, tc.want)
			}
		})
	}
}
