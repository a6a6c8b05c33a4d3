package apiaudit

import (
	"testing"
	"time"
)

// TestLatencies: quantiles of the answered writes only, and the slowest
// window among those with enough writes to say.
func TestLatencies(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)
	var entries []Entry
	add := func(at time.Time, took time.Duration, n int) {
		for range n {
			entries = append(entries, Entry{Verb: "update", RequestReceived: at, Completed: at.Add(took)})
		}
	}
	add(t0, 10*time.Millisecond, 150)                      // the first ten minutes: fast
	add(t0.Add(10*time.Minute), 200*time.Millisecond, 150) // the second: slow
	add(t0.Add(20*time.Minute), 5*time.Second, 10)         // too few to be a window
	entries = append(entries, Entry{Verb: "update", RequestReceived: t0, Completed: t0, Interrupted: true})
	l := Latencies(entries, 10*time.Minute)
	if l.N != 310 {
		t.Errorf("%d writes, want 310 (the interrupted one left out)", l.N)
	}
	if l.P50 != 200*time.Millisecond || l.P99 != 5*time.Second {
		t.Errorf("p50 %s p99 %s, want 200ms and 5s", l.P50, l.P99)
	}
	if l.Slowest != 200*time.Millisecond || !l.SlowestAt.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("slowest window %s at %s, want 200ms at %s", l.Slowest, l.SlowestAt, t0.Add(10*time.Minute))
	}
	if got := (Latency{}).String(); got != "no writes" {
		t.Errorf("empty: %q", got)
	}
}
