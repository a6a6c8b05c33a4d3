// Package await is how tests wait: for a condition to hold (Until), or for
// one to keep holding over a span (Stays). Tests do not sleep and then
// assert: a sleep that is too short passes when the system is merely slow,
// and one that is long enough wastes every run. CI (hack/check-sleeps.sh)
// fails on a new time.Sleep in a test.
package await

import (
	"testing"
	"time"
)

// interval is how often conditions are checked, unless a test says.
const interval = 10 * time.Millisecond

// Until checks cond every 10 ms until it holds, and fails the test if it
// has not within timeout.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	UntilEvery(tb, timeout, interval, what, cond)
}

// UntilEvery is Until checking every every (for costly conditions).
func UntilEvery(tb testing.TB, timeout, every time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !poll(timeout, every, cond, true) {
		tb.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Stays checks cond every 10 ms for d and fails the test the first time it
// does not hold: an absence asserted over the whole span, not at its end.
func Stays(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	StaysEvery(tb, d, interval, what, cond)
}

// StaysEvery is Stays checking every every (for costly conditions).
func StaysEvery(tb testing.TB, d, every time.Duration, what string, cond func() bool) {
	tb.Helper()
	if poll(d, every, cond, false) {
		tb.Fatalf("%s stopped holding within %s", what, d)
	}
}

// poll checks cond every every until it returns want or span ends; it
// reports whether cond returned want.
func poll(span, every time.Duration, cond func() bool, want bool) bool {
	deadline := time.NewTimer(span)
	defer deadline.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if cond() == want {
			return true
		}
		select {
		case <-deadline.C:
			return cond() == want
		case <-tick.C:
		}
	}
}

// UntilSeen is UntilEvery for a condition that also describes what it saw,
// which the failure message gives.
func UntilSeen(tb testing.TB, timeout, every time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	var seen string
	if !poll(timeout, every, func() bool {
		var ok bool
		ok, seen = cond()
		return ok
	}, true) {
		tb.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, seen)
	}
}
