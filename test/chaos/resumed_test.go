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

// TestMoves: a fault that takes no owner away (an API server restart) is
// charged with the moves in its window, but not with those of a fault that
// began meanwhile and took their owners away.
func TestMoves(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	o := func(at time.Time, owner string, epoch int64) ownership {
		return ownership{at: at, owner: owner, epoch: epoch, phase: tetherv1alpha1.PhaseRunning}
	}
	deleteB := &fault{kind: "pod-delete", target: "b", start: at(6), lost: map[string]bool{"b": true}}
	freezeNode := &fault{kind: "node-freeze", target: "node2", start: at(7), lost: map[string]bool{"c": true}}
	for _, tc := range []struct {
		name  string
		line  []ownership
		later []*fault
		want  int
	}{
		{"moved in the window", []ownership{o(at(0), "a", 1), o(at(5), "z", 2)}, nil, 1},
		{"moved after the window", []ownership{o(at(0), "a", 1), o(at(11), "z", 2)}, nil, 0},
		{"first placed in the window", []ownership{o(at(0), "", 1), o(at(5), "z", 1)}, nil, 0},
		{"its pod deleted by the next fault", []ownership{o(at(0), "b", 1), o(at(7), "z", 2)}, []*fault{deleteB}, 0},
		{"moved before the next fault took its pod", []ownership{o(at(0), "b", 1), o(at(5), "z", 2)}, []*fault{deleteB}, 1},
		{"its pod lost with a node", []ownership{o(at(0), "c", 1), o(at(8), "z", 2)}, []*fault{deleteB, freezeNode}, 0},
		{"another pod's move", []ownership{o(at(0), "a", 1), o(at(8), "z", 2)}, []*fault{deleteB, freezeNode}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &ownerHistory{lines: map[string][]ownership{"conv": tc.line}}
			// An API server restart from 1 s, ended at 6 s, Lease 4 s.
			if got := h.moves(at(1), at(10), tc.later); got != tc.want {
				t.Errorf("moves = %d, want %d", got, tc.want)
			}
		})
	}
}
