package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

func TestFlapping(t *testing.T) {
	every := func(n int, gap time.Duration) []time.Time {
		out := make([]time.Time, n)
		for i := range out {
			out[i] = t0.Add(-time.Duration(n-i) * gap)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		changes []time.Time
		want    bool
	}{
		{"none", nil, false},
		{"a move and a wake", every(2, time.Second), false},
		{"six in a minute is the most allowed", every(6, 5*time.Second), false},
		{"seven in a minute", every(7, 5*time.Second), true},
		{"a storm", every(700, 50*time.Millisecond), true},
		{"seven spread over seven minutes", every(7, time.Minute), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := flapping(tc.changes, t0); got != tc.want {
				t.Fatalf("flapping = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestOwnershipHistoryWarnsOncePerWindow: a conversation changing owner
// every second is flapping from the seventh change; it is warned about once
// a minute, and not after it settles. It starts Suspended and unknown, so
// its first wake is not counted (a quiet Suspended conversation is not
// remembered): the seventh change is at 8 s.
func TestOwnershipHistoryWarnsOncePerWindow(t *testing.T) {
	var h ownershipHistory
	conv := &tetherv1alpha1.Conversation{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"}}
	warnings := 0
	var firstFlap time.Duration
	for i := range 120 {
		phase := tetherv1alpha1.PhaseSuspended
		if i%2 == 1 {
			phase = tetherv1alpha1.PhasePending
		}
		conv.Status.Phase, conv.Status.Lease = phase, &tetherv1alpha1.ConversationLease{Epoch: int64(i + 1)}
		now := t0.Add(time.Duration(i) * time.Second)
		isFlapping, warn := h.observe(conv, now)
		if isFlapping && firstFlap == 0 {
			firstFlap = time.Duration(i) * time.Second
		}
		if warn != "" {
			warnings++
		}
	}
	if firstFlap != 8*time.Second || warnings != 2 {
		t.Fatalf("flapping from %s with %d warnings in two minutes, want from 8s (the 7th change counted) with 2", firstFlap, warnings)
	}
	if len(h.convs) != 1 {
		t.Fatalf("%d conversations remembered, want 1", len(h.convs))
	}
	// Settled: the same epoch for a minute.
	if isFlapping, _ := h.observe(conv, t0.Add(200*time.Second)); isFlapping {
		t.Fatal("still flapping a minute after the last change")
	}
	// Suspended and quiet, or finished: forgotten.
	conv.Status.Phase = tetherv1alpha1.PhaseSuspended
	h.observe(conv, t0.Add(201*time.Second))
	if len(h.convs) != 0 {
		t.Fatalf("a quiet Suspended conversation still remembered")
	}
}
