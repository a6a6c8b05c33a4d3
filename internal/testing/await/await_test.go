package await

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	var n atomic.Int64
	if !poll(time.Second, interval, func() bool { return n.Add(1) == 3 }, true) {
		t.Fatal("Until gave up on a condition that came true")
	}
	if poll(30*time.Millisecond, interval, func() bool { return false }, true) {
		t.Fatal("Until saw a condition that never held")
	}
	// Stays: a condition that breaks in the middle of the span is caught,
	// one that holds throughout is not.
	start := time.Now()
	if !poll(time.Second, interval, func() bool { return time.Since(start) < 50*time.Millisecond }, false) {
		t.Fatal("a break in the middle of the span was missed")
	}
	if poll(50*time.Millisecond, interval, func() bool { return true }, false) {
		t.Fatal("a condition that held throughout was reported broken")
	}
}
