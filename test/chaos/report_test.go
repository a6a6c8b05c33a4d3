package chaos

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// kindFigures are one fault kind's figures over a run.
type kindFigures struct {
	injected, failed int
	owned, prompt    []time.Duration
	notOwned         int // affected conversations never owned again
	// kept counts affected conversations whose owner came back (thawed,
	// reconnected) and served them again before another pod took them
	// within two Leases: no move to time.
	kept int
	// notOwnedSamples are those conversations, each with its fault, for
	// the log to show what became of them.
	notOwnedSamples []notOwnedSample
	moves           int // ownership changes the fault caused elsewhere
	// slowest is the slowest "owned again" sample: its conversation and
	// fault, for the log to show its timeline.
	slowest      time.Duration
	slowestConv  string
	slowestFault *fault
	// slowestPrompt is the slowest "prompt again" sample, likewise.
	slowestPrompt      time.Duration
	slowestPromptConv  *transcript
	slowestPromptFault *fault
}

// figures measures, per fault kind, the time from each fault to its
// conversations being owned again and to its clients holding their prompt
// again.
func (w *world) figures(faults []*fault, owners *ownerHistory) map[string]*kindFigures {
	out := map[string]*kindFigures{}
	ownerKinds := map[string]bool{}
	for _, k := range faultKinds {
		ownerKinds[k.name] = k.owners
	}
	for i, f := range faults {
		// A prompt that comes after the next fault began is that fault's.
		until := time.Now()
		if i+1 < len(faults) {
			until = faults[i+1].start
		}
		fig := out[f.kind]
		if fig == nil {
			fig = &kindFigures{}
			out[f.kind] = fig
		}
		fig.injected++
		if f.err != nil {
			fig.failed++
			continue
		}
		before := owners.at(f.start)
		hit := map[string]bool{}
		for name, o := range before {
			live := o.phase == tetherv1alpha1.PhaseRunning || o.phase == tetherv1alpha1.PhaseAwaitingInput
			if live && o.owner != "" && (f.lost[o.owner] || o.owner == f.target) {
				hit[name] = true
			}
		}
		switch {
		case ownerKinds[f.kind]:
			for name := range hit {
				at, ok := owners.ownedAgain(name, f.start, before[name].epoch, f.lost)
				if ownerReturns(f.kind) && owners.resumed(name, f.start, f.end, before[name].owner, before[name].epoch) && (!ok || at.After(f.end.Add(2**lease))) {
					fig.kept++
					continue
				}
				if ok {
					fig.owned = append(fig.owned, at.Sub(f.start))
					if d := at.Sub(f.start); d > fig.slowest {
						fig.slowest, fig.slowestConv, fig.slowestFault = d, name, f
					}
				} else {
					fig.notOwned++
					fig.notOwnedSamples = append(fig.notOwnedSamples, notOwnedSample{name, f})
				}
			}
		case len(hit) == 0:
			fig.moves += owners.moves(f.start, f.end.Add(*lease), faults[i+1:])
		}
		for tr, seq := range f.prompted {
			if ownerKinds[f.kind] && !hit[tr.name] {
				continue // a fault on owners concerns the clients of what they owned
			}
			// The prompt comes again on every new bind: a client whose
			// socket the fault did not touch gets none, and is not counted.
			if at, ok := tr.promptAgain(f.start, seq); ok && at.Before(until) && at.Sub(f.start) < time.Minute {
				fig.prompt = append(fig.prompt, at.Sub(f.start))
				if d := at.Sub(f.start); d > fig.slowestPrompt {
					fig.slowestPrompt, fig.slowestPromptConv, fig.slowestPromptFault = d, tr, f
				}
			}
		}
	}
	return out
}

// ownerReturns reports whether a fault of kind leaves its owner able to
// come back (thawed, reconnected): a deleted pod's process writes only
// what it had in flight before it dies.
func ownerReturns(kind string) bool {
	switch kind {
	case "pod-freeze", "node-freeze", "node-partition":
		return true
	}
	return false
}

// notOwnedSample is a conversation a fault took its owner from and that no
// pod outside the fault was seen claiming afterwards.
type notOwnedSample struct {
	conv  string
	fault *fault
}

// report is the run's report in Markdown.
func (w *world) report(faults []*fault, a *findings, owners *ownerHistory, settle time.Duration) string {
	var b strings.Builder
	figs := w.figures(faults, owners)
	first, last := faults[0].start, faults[len(faults)-1].end
	fmt.Fprintf(&b, "### Chaos run of %s (Lease %s, %d faults in %s)\n\n", w.start.UTC().Format("2006-01-02 15:04"), *lease, len(faults), last.Sub(first).Round(time.Second))
	b.WriteString("| fault | injected | owned again p50 / p99 (n) | prompt again p50 / p99 (n) | not owned again | moves it caused elsewhere |\n|---|---|---|---|---|---|\n")
	names := make([]string, 0, len(figs))
	for k := range figs {
		names = append(names, k)
	}
	sort.Strings(names)
	total := 0
	for _, k := range names {
		f := figs[k]
		total += f.injected - f.failed
		injected := fmt.Sprint(f.injected)
		if f.failed > 0 {
			injected += fmt.Sprintf(" (%d could not be)", f.failed)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d |\n", k, injected, quantiles(f.owned), quantiles(f.prompt), f.notOwned, f.moves)
	}
	var kept []string
	for _, k := range names {
		if n := figs[k].kept; n > 0 {
			kept = append(kept, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(kept) > 0 {
		fmt.Fprintf(&b, "\nKept by their own owner, which came back and served them again before another pod took them (not in \"owned again\"): %s.\n", strings.Join(kept, ", "))
	}
	fmt.Fprintf(&b, "\nAudit: %d conversations, %d messages and answers sent, %d acknowledged, %d answers applied, %d events read back; "+
		"runtime writes judged from the API server's audit log: %d status, %d log heads, %d chunks (%d late, see below); events sent twice to a client: %d.\n",
		a.conversations, a.sent, a.acked, a.answers, a.events, a.writes["status"], a.writes["log"], a.writes["chunk"], a.late["log"]+a.late["chunk"], a.repeats)
	if len(a.orphans) > 0 {
		fmt.Fprintf(&b, "Orphan chunks (a fenced owner's copy of events its head had committed, created after a newer owner wrote; never pointed at, see docs/reliability.md): %d.\n", len(a.orphans))
	}
	if a.unservedFinished > 0 {
		fmt.Fprintf(&b, "Finished conversations whose owner pod was gone (the gateway does not serve them: 4010), audited from their stores: %d.\n", a.unservedFinished)
	}
	if a.trimmed > 0 {
		fmt.Fprintf(&b, "Logs trimmed by retention, audited from their first kept event (what a client saw before it, and the refund checks, left out): %d.\n", a.trimmed)
	}
	fmt.Fprintf(&b, "Violations: %d", a.total())
	if a.total() > 0 {
		var kinds []string
		for what, list := range a.violations {
			kinds = append(kinds, fmt.Sprintf("%s %d", what, len(list)))
		}
		if len(a.stale) > 0 {
			kinds = append(kinds, fmt.Sprintf("stale writes accepted %d", len(a.stale)))
		}
		slices.Sort(kinds)
		fmt.Fprintf(&b, " (%s)", strings.Join(kinds, ", "))
	}
	fmt.Fprintf(&b, ". Every conversation owned by a ready pod (or ended, or suspended) %s after the last fault ended; %d faults took effect.\n",
		settle.Round(100*time.Millisecond), total)
	return b.String()
}

// details lists what the audit found wrong, and the grants it had to infer,
// for the report: a run's evidence outlives its log there. Up to 10 of
// each kind.
func (a *findings) details() string {
	var b strings.Builder
	if a.latency.N > 0 {
		fmt.Fprintf(&b, "The API server's answers to the writes it audited (Tether's objects and Leases), from arrival to answer: %s.\n", a.latency)
	}
	if n := a.interrupted["status"] + a.interrupted["log"] + a.interrupted["chunk"]; n > 0 {
		fmt.Fprintf(&b, "Writes of Tether's objects the API server was killed while serving (arrived, never answered; of unknown outcome): %d (%d status, %d log heads, %d chunks).\n",
			n, a.interrupted["status"], a.interrupted["log"], a.interrupted["chunk"])
	}
	if n := a.unanswered["log"] + a.unanswered["chunk"]; n > 0 {
		fmt.Fprintf(&b, "Log writes that completed while the status write giving their pod the conversation was still being answered (the runtime saw the grant in its watch first; judged with that grant): %d.\n", n)
	}
	if len(a.inferred) > 0 {
		fmt.Fprintf(&b, "Grants inferred (the manager's write that made each was interrupted by an API server kill, so the audit log cannot show it; a runtime's accepted write showed it): %d.\n", len(a.inferred))
	}
	if a.total() == 0 {
		return b.String()
	}
	b.WriteString("\n<details><summary>What the audit found</summary>\n\n")
	kinds := make([]string, 0, len(a.violations))
	for what := range a.violations {
		kinds = append(kinds, what)
	}
	slices.Sort(kinds)
	for _, what := range kinds {
		for _, v := range a.violations[what][:min(10, len(a.violations[what]))] {
			fmt.Fprintf(&b, "- %s: %s\n", what, v)
		}
	}
	for _, f := range a.stale[:min(10, len(a.stale))] {
		fmt.Fprintf(&b, "- stale write accepted: %s\n", f)
	}
	shown := map[string]bool{}
	for _, f := range a.stale {
		lines, ok := a.timelines[f.Conversation]
		if !ok || shown[f.Conversation] {
			continue
		}
		shown[f.Conversation] = true
		fmt.Fprintf(&b, "\n  What the API server's audit log holds of %s's writes around it:\n\n", f.Conversation)
		for _, l := range lines {
			fmt.Fprintf(&b, "      %s\n", l)
		}
	}
	b.WriteString("\n</details>\n")
	return b.String()
}

// quantiles formats p50 / p99 (n).
func quantiles(d []time.Duration) string {
	if len(d) == 0 {
		return "–"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.5) - 1
		return s[min(max(i, 0), len(s)-1)].Round(10 * time.Millisecond)
	}
	return fmt.Sprintf("%s / %s (%d)", q(0.5), q(0.99), len(s))
}

// slowest describes, per fault kind, its slowest "owned again" sample: the
// conversation's states from the fault's start until it was owned again,
// each with its offset from the start.
func (w *world) slowest(faults []*fault, owners *ownerHistory) string {
	var b strings.Builder
	figs := w.figures(faults, owners)
	names := make([]string, 0, len(figs))
	for k := range figs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		f := figs[k]
		if f.slowestFault != nil {
			w.describeSample(&b, owners, k, "owned again", f.slowestFault, f.slowestConv, f.slowest)
			if states := owners.between(f.slowestConv, f.slowestFault.start, f.slowestFault.start.Add(f.slowest)); len(states) > 0 {
				o := states[len(states)-1]
				fmt.Fprintf(&b, "    its new owner logged: %s\n", w.claimLogged(o.owner, f.slowestConv, o.epoch, o.at))
			}
		}
		if f.slowestPromptFault != nil {
			f0, tr := f.slowestPromptFault, f.slowestPromptConv
			w.describeSample(&b, owners, k, "had its prompt again", f0, tr.name, f.slowestPrompt)
			b.WriteString("    its client saw:")
			for _, m := range tr.marksBetween(f0.start, f0.start.Add(f.slowestPrompt)) {
				fmt.Fprintf(&b, " %+.2fs %s;", m.at.Sub(f0.start).Seconds(), m.what)
			}
			b.WriteString("\n")
		}
		// What became of each conversation not owned again: its states
		// from a Lease before the fault on (a new owner among the lost
		// pods once they were back, say, or an end the client chose).
		for _, s := range f.notOwnedSamples {
			fmt.Fprintf(&b, "not owned again after %s (%s at %s): %s:", k, s.fault.target,
				s.fault.start.Sub(w.start).Round(100*time.Millisecond), s.conv)
			for _, o := range owners.between(s.conv, s.fault.start.Add(-*lease), time.Now()) {
				fmt.Fprintf(&b, " %+.2fs %s %s/%d;", o.at.Sub(s.fault.start).Seconds(), o.phase, o.owner, o.epoch)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// describeSample writes one sample of a fault kind: the fault, and its
// conversation's states from a Lease before the fault until the sample.
func (w *world) describeSample(b *strings.Builder, owners *ownerHistory, kind, what string, f *fault, conv string, took time.Duration) {
	fmt.Fprintf(b, "slowest %s (%s, %s at %s): %s %s after %s:", kind, f.target,
		f.end.Sub(f.start).Round(100*time.Millisecond), f.start.Sub(w.start).Round(100*time.Millisecond),
		conv, what, took.Round(10*time.Millisecond))
	for _, o := range owners.between(conv, f.start.Add(-*lease), f.start.Add(took)) {
		fmt.Fprintf(b, " %+.2fs %s %s/%d;", o.at.Sub(f.start).Seconds(), o.phase, o.owner, o.epoch)
	}
	b.WriteString("\n")
}

// claimLogged is what pod's runtime logged of claiming conversation conv at
// epoch: how long the claim took and how long after the assignment it was
// done (the watch's delay and retries included), which splits a slow
// "owned again" between the manager and the new owner; and the errors it
// logged for conv before that, which say what the retries were for. Only
// a claim logged within 2 s of at (when the API server answered its status) is
// that claim: a container restarted since logs its own claims at the same
// epoch, and not the first.
func (w *world) claimLogged(pod, conv string, epoch int64, at time.Time) string {
	out, err := w.Run("kubectl", "logs", "--namespace", ns, pod, "--all-containers")
	if err != nil {
		return "its logs could not be read (the pod may be gone)"
	}
	if got, ok := findClaim(out, conv, epoch, at); ok {
		return got
	}
	// Its container restarted since: the claim is in the one before.
	if out, err := w.Run("kubectl", "logs", "--namespace", ns, pod, "--all-containers", "--previous"); err == nil {
		if got, ok := findClaim(out, conv, epoch, at); ok {
			return got + " (its container has restarted since)"
		}
	}
	return "no claim of it at that epoch near that time in its logs"
}

// findClaim finds in a runtime's log the claim of conv at epoch logged
// within 2 s of at, with the errors logged for conv before it.
func findClaim(out, conv string, epoch int64, at time.Time) (string, bool) {
	var errs []string
	for _, line := range strings.Split(out, "\n") {
		var l struct {
			TS            string   `json:"ts"`
			Msg           string   `json:"msg"`
			Name          string   `json:"name"`
			Epoch         int64    `json:"epoch"`
			Error         string   `json:"error"`
			Took          *float64 `json:"took"`
			SinceAssigned *float64 `json:"sinceAssigned"`
			StoreClaim    *float64 `json:"storeClaim"`
			Read          *float64 `json:"read"`
			Events        int      `json:"events"`
			SnapshotSeq   int64    `json:"snapshotSeq"`
			Publish       *float64 `json:"publish"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Name != conv {
			continue
		}
		if l.Error != "" {
			errs = append(errs, l.Msg+": "+l.Error)
			continue
		}
		if l.Msg != "claimed" || l.Epoch != epoch {
			continue
		}
		if ts, err := time.Parse(time.RFC3339, l.TS); err != nil || ts.Sub(at).Abs() > 2*time.Second {
			continue
		}
		var got string
		switch {
		case l.Took == nil:
			got = "claimed (no duration logged)"
		case l.SinceAssigned == nil:
			got = fmt.Sprintf("claimed in %.3fs", *l.Took)
		default:
			got = fmt.Sprintf("claimed in %.3fs, %.3fs after it was assigned", *l.Took, *l.SinceAssigned)
		}
		if l.StoreClaim != nil && l.Read != nil && l.Publish != nil {
			from := "whole"
			if l.SnapshotSeq > 0 {
				from = fmt.Sprintf("after the snapshot at %d", l.SnapshotSeq)
			}
			got += fmt.Sprintf(" (the store's claim %.3fs, reading %d events (%s) %.3fs, the status %.3fs)", *l.StoreClaim, l.Events, from, *l.Read, *l.Publish)
		}
		if len(errs) > 0 {
			got += fmt.Sprintf("; before that %d errors, the last: %s", len(errs), errs[len(errs)-1])
		}
		return got, true
	}
	return "", false
}
