// Package framerec records the frames a Tether client delivers, for tests
// to wait on and read: one recorder for the gateway's tests and the
// end-to-end tests alike.
package framerec

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/protocol"
)

// Recorder keeps every frame delivered, with when it arrived.
type Recorder struct {
	// Context, when set, is added to a failure's message (the client's
	// state, say).
	Context func() string

	mu     sync.Mutex
	frames []protocol.ServerFrame
	times  []time.Time
	added  chan struct{}
}

// Record keeps what frames delivers until it is closed.
func Record(frames <-chan protocol.ServerFrame) *Recorder {
	r := &Recorder{added: make(chan struct{}, 1)}
	go func() {
		for f := range frames {
			r.mu.Lock()
			r.frames, r.times = append(r.frames, f), append(r.times, time.Now())
			r.mu.Unlock()
			select {
			case r.added <- struct{}{}:
			default:
			}
		}
	}()
	return r
}

// Wait waits up to timeout for the n-th frame (counting from 1) satisfying
// want, and returns it and when it arrived.
func (r *Recorder) Wait(tb testing.TB, timeout time.Duration, what string, n int, want func(protocol.ServerFrame) bool) (protocol.ServerFrame, time.Time) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		k := 0
		for i, f := range r.frames {
			if want(f) {
				if k++; k == n {
					at := r.times[i]
					r.mu.Unlock()
					return f, at
				}
			}
		}
		r.mu.Unlock()
		select {
		case <-r.added:
		case <-deadline.C:
			context := ""
			if r.Context != nil {
				context = "; " + r.Context()
			}
			tb.Fatalf("timed out waiting for %s%s; frames: %s", what, context, r.Describe())
		}
	}
}

// Frames is a copy of the frames delivered so far, in order.
func (r *Recorder) Frames() []protocol.ServerFrame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]protocol.ServerFrame(nil), r.frames...)
}

// Count is how many frames delivered so far satisfy want.
func (r *Recorder) Count(want func(protocol.ServerFrame) bool) int {
	n := 0
	for _, f := range r.Frames() {
		if want(f) {
			n++
		}
	}
	return n
}

// Describe lists the frames, one a line, for failure messages.
func (r *Recorder) Describe() string {
	var b strings.Builder
	for _, f := range r.Frames() {
		fmt.Fprintf(&b, "\n  %s seq=%d event=%s phase=%s id=%s code=%s %s", f.Type, f.Seq, f.Event, f.Phase, f.ID, f.Code, f.Message)
	}
	return b.String()
}
