package eventlog_test

import (
	"errors"
	"testing"

	"tether.dev/tether/eventlog"
)

func seqs(s ...int64) []eventlog.Event {
	out := make([]eventlog.Event, len(s))
	for i, n := range s {
		out[i].Seq = n
	}
	return out
}

func TestCheckRead(t *testing.T) {
	k := eventlog.Key{Namespace: "ns", Name: "c"}
	b := eventlog.Bounds{FirstSeq: 5, LastSeq: 10}
	for _, tc := range []struct {
		name   string
		after  int64
		limit  int
		events []eventlog.Event
		hole   bool
	}{
		{"whole, from the first retained", 0, 100, seqs(5, 6, 7, 8, 9, 10), false},
		{"whole, after a cursor", 7, 100, seqs(8, 9, 10), false},
		{"whole, up to the limit", 5, 2, seqs(6, 7), false},
		{"nothing after the end", 10, 100, nil, false},
		{"nothing after a cursor past the end", 50, 100, nil, false},
		{"a gap in the middle", 0, 100, seqs(5, 6, 8, 9, 10), true},
		{"the first one missing", 0, 100, seqs(6, 7, 8, 9, 10), true},
		{"the last one missing", 0, 100, seqs(5, 6, 7, 8, 9), true},
		{"short of the limit", 5, 3, seqs(6, 7), true},
		{"nothing where events are", 7, 100, nil, true},
		{"out of order", 0, 100, seqs(5, 7, 6, 8, 9, 10), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := eventlog.CheckRead(k, b, tc.after, tc.limit, tc.events)
			if got := errors.Is(err, eventlog.ErrHole); got != tc.hole {
				t.Fatalf("CheckRead = %v, want a hole: %v", err, tc.hole)
			}
		})
	}
}
