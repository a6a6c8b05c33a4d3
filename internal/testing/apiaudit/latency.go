package apiaudit

import (
	"fmt"
	"slices"
	"time"
)

// Latency is how long the API server took to answer the writes its audit
// log holds (arrival to answer), over a run and in its slowest window: what
// every claim, placement and status write waited on. It puts a run's
// failover figures in context (docs/reliability.md).
type Latency struct {
	N             int
	P50, P90, P99 time.Duration
	// Slowest is the window with the highest p99 (of those with at least
	// minWindowWrites writes), from SlowestAt.
	Slowest   time.Duration
	SlowestAt time.Time
}

// minWindowWrites keeps a nearly empty window from being the slowest.
const minWindowWrites = 100

// Latencies summarizes the answered writes of entries, with windows of
// window.
func Latencies(entries []Entry, window time.Duration) Latency {
	var all []time.Duration
	windows := map[time.Time][]time.Duration{}
	for i := range entries {
		e := &entries[i]
		if e.Interrupted || e.Verb == "get" || e.Verb == "list" || e.Verb == "watch" {
			continue
		}
		d := e.Completed.Sub(e.RequestReceived)
		all = append(all, d)
		w := e.RequestReceived.Truncate(window)
		windows[w] = append(windows[w], d)
	}
	l := Latency{N: len(all)}
	if len(all) == 0 {
		return l
	}
	slices.Sort(all)
	l.P50, l.P90, l.P99 = quantile(all, 0.5), quantile(all, 0.9), quantile(all, 0.99)
	for at, ds := range windows {
		if len(ds) < minWindowWrites {
			continue
		}
		slices.Sort(ds)
		if p := quantile(ds, 0.99); p > l.Slowest || p == l.Slowest && at.Before(l.SlowestAt) {
			l.Slowest, l.SlowestAt = p, at
		}
	}
	return l
}

// quantile is the q-th of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (l Latency) String() string {
	if l.N == 0 {
		return "no writes"
	}
	s := fmt.Sprintf("p50 %s, p90 %s, p99 %s over %d writes", ms(l.P50), ms(l.P90), ms(l.P99), l.N)
	if !l.SlowestAt.IsZero() {
		s += fmt.Sprintf("; p99 %s in the slowest ten minutes (from %s)", ms(l.Slowest), l.SlowestAt.UTC().Format("15:04"))
	}
	return s
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }
