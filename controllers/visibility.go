package controllers

import (
	"context"
	"sync"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
)

// APIVisibility records since when this manager has seen the API server
// without a gap. Owners renew their Leases through the API server, so while
// the manager cannot see it (the API server restarting, the manager cut off
// from it) the renewals it misses say nothing about the owners: an owner's
// Lease is judged expired only once the manager has watched it for a whole
// Lease duration since its last gap. Without this, an API server restart
// longer than the Lease moved every conversation of the cluster (found by
// the chaos suite); with it, owners that renew as soon as the API server is
// back keep their conversations. The grace only ever delays a move, never
// hastens one: fencing is unchanged.
type APIVisibility struct {
	// Probe asks the API server whether it is there (its /readyz).
	Probe func(context.Context) error
	// Interval between probes.
	Interval time.Duration
	// GapAfter is how long without an answer makes a gap [4 intervals]. A
	// loaded API server answers /readyz slowly, not never: a shorter bound
	// (it was two intervals, a second) took slow answers for gaps, a dozen
	// in a chaos run after each API server restart, each delaying every
	// move by a Lease duration. An owner that renews every third of its
	// Lease and retries within a second keeps a Lease of 4 s through a
	// 2 s gap.
	GapAfter time.Duration
	Clock    clock.PassiveClock

	mu            sync.Mutex
	lastOK, since time.Time
}

// Since is when the manager last started seeing the API server after a
// gap; zero when it has seen no gap. A gap still open (no answer for
// GapAfter) counts as ending now: a reconcile that the API server's return
// set off can run before the next probe has noticed the gap.
func (v *APIVisibility) Since() time.Time {
	if v == nil {
		return time.Time{}
	}
	now := v.Clock.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.lastOK.IsZero() && now.Sub(v.lastOK) > v.gapAfter() {
		return now
	}
	return v.since
}

// observe records one probe's outcome at now, and returns the gap it ends
// (zero when it ends none).
func (v *APIVisibility) observe(ok bool, now time.Time) time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !ok {
		return 0
	}
	var gap time.Duration
	if !v.lastOK.IsZero() && now.Sub(v.lastOK) > v.gapAfter() {
		v.since = now
		gap = now.Sub(v.lastOK)
	}
	v.lastOK = now
	return gap
}

func (v *APIVisibility) gapAfter() time.Duration {
	if v.GapAfter > 0 {
		return v.GapAfter
	}
	return 4 * v.Interval
}

// Start probes until ctx ends (a manager.Runnable, on every replica).
func (v *APIVisibility) Start(ctx context.Context) error {
	log := ctrl.Log.WithName("api-visibility")
	t := time.NewTicker(v.Interval)
	defer t.Stop()
	for {
		probeCtx, cancel := context.WithTimeout(ctx, v.gapAfter())
		err := v.Probe(probeCtx)
		cancel()
		if gap := v.observe(err == nil, v.Clock.Now()); gap > 0 {
			// Every Lease is now judged from here on: say so, since it
			// delays every move pending.
			apiGapSeconds.Observe(gap.Seconds())
			log.Info("the API server answered again after a gap: Leases are judged a whole duration from now", "gap", gap.Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
