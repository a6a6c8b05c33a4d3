package chaos

import (
	"fmt"
	"strings"
	"time"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/apiaudit"
)

// ownership is one state of a conversation's status, when the API server
// answered the write that made it.
type ownership struct {
	at    time.Time
	owner string
	epoch int64
	phase tetherv1alpha1.ConversationPhase
	// last is when the same state was last written again (zero: never).
	last time.Time
}

// ownerHistory holds every conversation's owners, epochs and phases over the
// run, each change once.
//
// It is read from the API server's audit log, not from a watch: a watch
// tells of a change when it is delivered, and after an API server restart
// a new watch tells of the current state only. A watch the suite ran
// until 2026-12-07 showed conversations claimed minutes after the audit
// log's answer to the claim (see docs/reliability.md).
type ownerHistory struct {
	lines map[string][]ownership
}

// ownersFrom is an ownerHistory of the status histories the audit log holds.
func ownersFrom(states map[string][]apiaudit.State) *ownerHistory {
	h := &ownerHistory{lines: make(map[string][]ownership, len(states))}
	for name, history := range states {
		var line []ownership
		for _, s := range history {
			o := ownership{at: s.At, owner: s.Owner, epoch: s.Epoch, phase: tetherv1alpha1.ConversationPhase(s.Phase)}
			if n := len(line); n == 0 || line[n-1].owner != o.owner || line[n-1].epoch != o.epoch || line[n-1].phase != o.phase {
				line = append(line, o)
			} else {
				line[n-1].last = o.at
			}
		}
		h.lines[name] = line
	}
	return h
}

// at is each conversation's state at t.
func (h *ownerHistory) at(t time.Time) map[string]ownership {
	out := map[string]ownership{}
	for name, line := range h.lines {
		for _, o := range line {
			if o.at.After(t) {
				break
			}
			out[name] = o
		}
	}
	return out
}

// between is conversation name's states seen from one time to another.
func (h *ownerHistory) between(name string, from, to time.Time) []ownership {
	var out []ownership
	for _, o := range h.lines[name] {
		if !o.at.Before(from) && !o.at.After(to) {
			out = append(out, o)
		}
	}
	return out
}

// last describes conversation name's latest n states, each at its offset
// from start.
func (h *ownerHistory) last(name string, n int, start time.Time) string {
	line := h.lines[name]
	var b strings.Builder
	for _, o := range line[max(0, len(line)-n):] {
		fmt.Fprintf(&b, " %s %s %s/%d;", o.at.Sub(start).Round(100*time.Millisecond), o.phase, o.owner, o.epoch)
	}
	return b.String()
}

// ownedAgain is when conversation name was next owned after t with an epoch
// above epoch, by a pod not in lost: when that pod had claimed it (the
// status in a phase only an owner writes), not when it was placed there.
func (h *ownerHistory) ownedAgain(name string, t time.Time, epoch int64, lost map[string]bool) (time.Time, bool) {
	for _, o := range h.lines[name] {
		if o.at.After(t) && o.epoch > epoch && o.owner != "" && !lost[o.owner] && claimed(o.phase) {
			return o.at, true
		}
	}
	return time.Time{}, false
}

// resumed reports whether conversation name, after a fault from start to
// end, was seen claimed by owner at epoch again after end (its owner came
// back and went on serving it: a new state, or the same one written again,
// as an echo turn writes it) before any newer epoch since start.
func (h *ownerHistory) resumed(name string, start, end time.Time, owner string, epoch int64) bool {
	for _, o := range h.lines[name] {
		if o.at.After(start) && o.epoch > epoch {
			return false
		}
		written := o.at
		if o.last.After(written) {
			written = o.last
		}
		if written.After(end) && o.owner == owner && o.epoch == epoch && claimed(o.phase) {
			return true
		}
	}
	return false
}

// moves counts the conversations taken from their owner (a new epoch after
// one that had an owner) between from and to; a first placement, or a
// suspended conversation woken, is no move. Neither is the move of a
// conversation whose owner a later fault (of later) took away once that
// fault had begun: it is that fault's, measured as its own.
func (h *ownerHistory) moves(from, to time.Time, later []*fault) int {
	n := 0
	for _, line := range h.lines {
		for i, o := range line {
			if i > 0 && o.at.After(from) && o.at.Before(to) && o.epoch != line[i-1].epoch && line[i-1].owner != "" &&
				!tookAway(later, line[i-1].owner, o.at) {
				n++
			}
		}
	}
	return n
}

// tookAway reports whether one of faults had begun by at and took pod away.
func tookAway(faults []*fault, pod string, at time.Time) bool {
	for _, f := range faults {
		if !at.Before(f.start) && (f.target == pod || f.lost[pod]) {
			return true
		}
	}
	return false
}

// claimed reports whether a phase is one the owner writes once it has
// claimed the conversation (the manager writes Pending and Rescheduling as
// it places one).
func claimed(p tetherv1alpha1.ConversationPhase) bool {
	switch p {
	case tetherv1alpha1.PhaseRunning, tetherv1alpha1.PhaseAwaitingInput, tetherv1alpha1.PhaseSucceeded, tetherv1alpha1.PhaseFailed:
		return true
	}
	return false
}
