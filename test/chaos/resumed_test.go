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
	for _, tc := range []struct {
		name string
		line []ownership
		want bool
	}{
		{"served again by its owner", []ownership{{at(0), "a", 3, awaiting}, {at(9), "a", 3, running}}, true},
		{"moved first", []ownership{{at(0), "a", 3, awaiting}, {at(5), "", 4, moving}, {at(6), "b", 4, running}, {at(9), "a", 3, running}}, false},
		{"nothing after the fault", []ownership{{at(0), "a", 3, awaiting}}, false},
		{"its owner's write before the fault ended", []ownership{{at(0), "a", 3, awaiting}, {at(2), "a", 3, running}}, false},
		{"placed back on its owner at a new epoch", []ownership{{at(0), "a", 3, awaiting}, {at(9), "a", 4, running}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wt := &watcher{lines: map[string][]ownership{"c": tc.line}}
			// The fault from 1 s to 8 s.
			if got := wt.resumed("c", at(1), at(8), "a", 3); got != tc.want {
				t.Errorf("resumed = %v, want %v", got, tc.want)
			}
		})
	}
}
