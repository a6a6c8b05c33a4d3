// Package eventlogtest is the conformance suite every event-log backend
// passes: ordering and gap-free sequences, bounded reads, retention, delete,
// fencing under concurrency, and refusal of bad input.
package eventlogtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tether.dev/tether/eventlog"
)

// Options tune the suite to a backend's speed.
type Options struct {
	// FencingRounds is how many claim races the fencing test runs.
	FencingRounds int
	// Appenders is how many goroutines append at once.
	Appenders int
	// NewOwner, when set, is a second client of the same store (as another
	// process would have) that the fencing race claims through; the same
	// log otherwise.
	NewOwner eventlog.Log
	// Gated returns another client of the same store whose every request
	// to the store first passes gate, so the suite can freeze an owner
	// between any two of its requests. Nil: the log is gated between whole
	// operations (right for a store whose operations are atomic in
	// process, like memory).
	Gated func(gate *Gate) eventlog.Log
	// Layouts are event counts at which the backend changes how it stores
	// a log (kubelog: its seal threshold); the stale-owner test freezes an
	// owner around each.
	Layouts []int
	// DropEvent removes one event from the store behind the log's back, as
	// damage would; nil where the store cannot be damaged that way.
	DropEvent func(key eventlog.Key, seq int64) error
}

var keySeq atomic.Int64

// NewKey returns a key no other test uses.
func NewKey(prefix string) eventlog.Key {
	n := keySeq.Add(1)
	return eventlog.Key{Namespace: "ns-" + prefix, Name: fmt.Sprintf("conv-%d", n), UID: fmt.Sprintf("uid-%d", n)}
}

// Events returns n events whose data says which they are.
func Events(n int, tag string) []eventlog.Event {
	out := make([]eventlog.Event, n)
	for i := range out {
		out[i] = eventlog.Event{Type: "assistant_message", Data: json.RawMessage(fmt.Sprintf(`{"tag":%q,"i":%d}`, tag, i))}
	}
	return out
}

// Run runs the suite against log.
func Run(t *testing.T, log eventlog.Log, opts Options) {
	if opts.FencingRounds == 0 {
		opts.FencingRounds = 20
	}
	if opts.Appenders == 0 {
		opts.Appenders = 16
	}
	if opts.NewOwner == nil {
		opts.NewOwner = log
	}
	if opts.Gated == nil {
		opts.Gated = func(g *Gate) eventlog.Log { return &gatedLog{Log: log, gate: g} }
	}
	t.Run("AppendAndReadBack", func(t *testing.T) { appendAndReadBack(t, log) })
	t.Run("ReadAfterN", func(t *testing.T) { readAfterN(t, log) })
	t.Run("BoundedReads", func(t *testing.T) { boundedReads(t, log) })
	t.Run("ConcurrentAppendersLeaveNoGaps", func(t *testing.T) { concurrentAppenders(t, log, opts.Appenders) })
	t.Run("RetentionAndHistoryGone", func(t *testing.T) { retention(t, log) })
	t.Run("Delete", func(t *testing.T) { deleteLog(t, log) })
	t.Run("Fencing", func(t *testing.T) { fencing(t, log) })
	t.Run("FencingUnderConcurrency", func(t *testing.T) { fencingUnderConcurrency(t, log, opts) })
	t.Run("StaleOwnerFrozenAtEveryStep", func(t *testing.T) { staleOwnerFrozenAtEveryStep(t, log, opts) })
	t.Run("StaleOwnerTrimIsFenced", func(t *testing.T) { staleOwnerTrim(t, log, opts) })
	t.Run("HoleIsReported", func(t *testing.T) { holeIsReported(t, log, opts) })
	t.Run("IdentityNamesOneHistory", func(t *testing.T) { identityNamesOneHistory(t, log) })
	t.Run("BadInput", func(t *testing.T) { badInput(t, log) })
	t.Run("NamespacesAreSeparate", func(t *testing.T) { namespacesAreSeparate(t, log) })
	if cr, ok := log.(eventlog.ClaimReader); ok {
		t.Run("ClaimRead", func(t *testing.T) { claimRead(t, log, cr) })
		if sn, ok := log.(eventlog.Snapshotter); ok {
			t.Run("Snapshots", func(t *testing.T) { snapshots(t, log, cr, sn) })
		}
	}
}

func claim(t *testing.T, log eventlog.Log, key eventlog.Key, epoch int64) eventlog.Bounds {
	t.Helper()
	b, err := log.Claim(context.Background(), key, epoch)
	if err != nil {
		t.Fatalf("Claim(%s, %d): %v", key, epoch, err)
	}
	return b
}

func mustAppend(t *testing.T, log eventlog.Log, key eventlog.Key, epoch int64, events []eventlog.Event) int64 {
	t.Helper()
	last, err := log.Append(context.Background(), key, epoch, events)
	if err != nil {
		t.Fatalf("Append(%s, %d, %d events): %v", key, epoch, len(events), err)
	}
	return last
}

func readAll(t *testing.T, log eventlog.Log, key eventlog.Key, after int64) []eventlog.Event {
	t.Helper()
	var out []eventlog.Event
	for {
		batch, err := log.Read(context.Background(), key, after, eventlog.MaxReadEvents)
		if err != nil {
			t.Fatalf("Read(%s, after %d): %v", key, after, err)
		}
		if len(batch) == 0 {
			return out
		}
		out = append(out, batch...)
		after = batch[len(batch)-1].Seq
	}
}

func bounds(t *testing.T, log eventlog.Log, key eventlog.Key) eventlog.Bounds {
	t.Helper()
	b, err := log.Bounds(context.Background(), key)
	if err != nil {
		t.Fatalf("Bounds(%s): %v", key, err)
	}
	return b
}

// checkSeqs fails unless events are numbered from..from+len-1 in order.
func checkSeqs(t *testing.T, events []eventlog.Event, from int64) {
	t.Helper()
	for i, e := range events {
		if want := from + int64(i); e.Seq != want {
			t.Fatalf("event %d has seq %d, want %d (gap or disorder)", i, e.Seq, want)
		}
	}
}

func appendAndReadBack(t *testing.T, log eventlog.Log) {
	key := NewKey("append")
	b := claim(t, log, key, 1)
	if b.LogID == "" {
		t.Fatalf("a new log has no identity: %+v", b)
	}
	if b != (eventlog.Bounds{FirstSeq: 1, LastSeq: 0, Epoch: 1, LogID: b.LogID}) {
		t.Fatalf("a new log's bounds: %+v", b)
	}
	before := time.Now().Add(-time.Second)
	batch := []eventlog.Event{
		{Type: "user_message", ClientID: "m-1", Data: json.RawMessage(`{"text":"refund order 1234"}`)},
		{Type: "assistant_message", Data: json.RawMessage(`{"text":"looking it up"}`)},
		{Type: "prompt", Data: json.RawMessage(`{"id":"p1","text":"Approve?","options":["approve","reject"]}`)},
	}
	if last := mustAppend(t, log, key, 1, batch); last != 3 {
		t.Fatalf("last seq %d, want 3", last)
	}
	got := readAll(t, log, key, 0)
	if len(got) != 3 {
		t.Fatalf("read %d events, want 3", len(got))
	}
	checkSeqs(t, got, 1)
	for i, e := range got {
		if e.Type != batch[i].Type || e.ClientID != batch[i].ClientID || e.Epoch != 1 {
			t.Errorf("event %d: %+v, appended %+v at epoch 1", i, e, batch[i])
		}
		if !jsonEqual(e.Data, batch[i].Data) {
			t.Errorf("event %d data %s, appended %s", i, e.Data, batch[i].Data)
		}
		if e.Time.Before(before) || e.Time.After(time.Now().Add(time.Second)) {
			t.Errorf("event %d time %s is not the append time", i, e.Time)
		}
	}
	if last := mustAppend(t, log, key, 1, Events(2, "more")); last != 5 {
		t.Fatalf("last seq %d after two more, want 5", last)
	}
	if b := bounds(t, log, key); b.FirstSeq != 1 || b.LastSeq != 5 || b.Epoch != 1 {
		t.Fatalf("bounds %+v", b)
	}
	// Claiming again at the same epoch (a restarted owner) keeps the log.
	if b := claim(t, log, key, 1); b.LastSeq != 5 {
		t.Fatalf("re-claim at the same epoch: %+v", b)
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && fmt.Sprint(x) == fmt.Sprint(y)
}

func readAfterN(t *testing.T, log eventlog.Log) {
	key := NewKey("after")
	claim(t, log, key, 1)
	mustAppend(t, log, key, 1, Events(10, "x"))
	for _, tc := range []struct {
		after int64
		want  int
	}{{0, 10}, {4, 6}, {9, 1}, {10, 0}, {25, 0}} {
		got := readAll(t, log, key, tc.after)
		if len(got) != tc.want {
			t.Errorf("after %d: %d events, want %d", tc.after, len(got), tc.want)
			continue
		}
		checkSeqs(t, got, tc.after+1)
	}
}

func boundedReads(t *testing.T, log eventlog.Log) {
	key := NewKey("bounded")
	claim(t, log, key, 1)
	for range 3 {
		mustAppend(t, log, key, 1, Events(eventlog.MaxBatchEvents, "bulk"))
	}
	total := 3 * eventlog.MaxBatchEvents
	for _, tc := range []struct{ limit, want int }{{10, 10}, {1, 1}, {0, eventlog.MaxReadEvents}, {-5, eventlog.MaxReadEvents}, {5000, eventlog.MaxReadEvents}} {
		got, err := log.Read(context.Background(), key, 0, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		want := min(tc.want, total)
		if len(got) != want {
			t.Errorf("limit %d: %d events, want %d", tc.limit, len(got), want)
		}
		checkSeqs(t, got, 1)
	}
	if got := readAll(t, log, key, 0); len(got) != total {
		t.Fatalf("paging read %d of %d", len(got), total)
	}
}

func concurrentAppenders(t *testing.T, log eventlog.Log, appenders int) {
	key := NewKey("concurrent")
	claim(t, log, key, 1)
	const rounds = 20
	var wg sync.WaitGroup
	errs := make(chan error, appenders)
	for g := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				batch := Events(1+r%3, fmt.Sprintf("g%d-r%d", g, r))
				if _, err := log.Append(context.Background(), key, 1, batch); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := 0
	for r := range rounds {
		want += appenders * (1 + r%3)
	}
	got := readAll(t, log, key, 0)
	if len(got) != want {
		t.Fatalf("%d events, want %d", len(got), want)
	}
	checkSeqs(t, got, 1)
	// Every batch landed whole and contiguous, and each appender's batches
	// in the order it made them.
	seen := map[string]bool{}
	lastRound := map[int]int{}
	for i := 0; i < len(got); {
		var d struct {
			Tag string `json:"tag"`
			I   int    `json:"i"`
		}
		if err := json.Unmarshal(got[i].Data, &d); err != nil || d.I != 0 || seen[d.Tag] {
			t.Fatalf("seq %d starts no new batch: %s", got[i].Seq, got[i].Data)
		}
		seen[d.Tag] = true
		var g, r int
		if _, err := fmt.Sscanf(d.Tag, "g%d-r%d", &g, &r); err != nil {
			t.Fatal(err)
		}
		if prev, ok := lastRound[g]; ok && r <= prev {
			t.Fatalf("appender %d's round %d landed after its round %d", g, r, prev)
		}
		lastRound[g] = r
		i += 1 + r%3
	}
}

func retention(t *testing.T, log eventlog.Log) {
	ctx := context.Background()
	key := NewKey("retention")
	claim(t, log, key, 1)
	mustAppend(t, log, key, 1, Events(30, "old"))
	if err := log.Trim(ctx, key, 1, 10); err != nil {
		t.Fatal(err)
	}
	b := bounds(t, log, key)
	if b.FirstSeq != 21 || b.LastSeq != 30 {
		t.Fatalf("bounds after keeping 10 of 30: %+v", b)
	}
	// A reader that saw up to 19 has lost event 20; one that saw 20 has not.
	if b.Complete(19) || !b.Complete(20) {
		t.Errorf("Complete(19)=%v Complete(20)=%v with first retained 21", b.Complete(19), b.Complete(20))
	}
	got := readAll(t, log, key, 5)
	if len(got) != 10 {
		t.Fatalf("read after 5 returned %d events, want the 10 retained", len(got))
	}
	checkSeqs(t, got, 21)
	// Numbering continues after a trim.
	if last := mustAppend(t, log, key, 1, Events(1, "new")); last != 31 {
		t.Fatalf("next seq after a trim: %d, want 31", last)
	}
	// Keeping more than there is changes nothing.
	if err := log.Trim(ctx, key, 1, 1000); err != nil {
		t.Fatal(err)
	}
	if b := bounds(t, log, key); b.FirstSeq != 21 || b.LastSeq != 31 {
		t.Fatalf("bounds after a no-op trim: %+v", b)
	}
	// Keeping nothing empties the log but not its numbering.
	if err := log.Trim(ctx, key, 1, 0); err != nil {
		t.Fatal(err)
	}
	if b := bounds(t, log, key); b.FirstSeq != 32 || b.LastSeq != 31 {
		t.Fatalf("bounds after trimming everything: %+v", b)
	}
	if last := mustAppend(t, log, key, 1, Events(1, "after-empty")); last != 32 {
		t.Fatalf("next seq after trimming everything: %d, want 32", last)
	}
}

func deleteLog(t *testing.T, log eventlog.Log) {
	ctx := context.Background()
	key := NewKey("delete")
	claim(t, log, key, 3)
	mustAppend(t, log, key, 3, Events(5, "doomed"))
	if err := log.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := log.Read(ctx, key, 0, 10); !errors.Is(err, eventlog.ErrUnknownConversation) {
		t.Errorf("Read after Delete: %v, want ErrUnknownConversation", err)
	}
	if _, err := log.Bounds(ctx, key); !errors.Is(err, eventlog.ErrUnknownConversation) {
		t.Errorf("Bounds after Delete: %v, want ErrUnknownConversation", err)
	}
	if _, err := log.Append(ctx, key, 3, Events(1, "late")); !errors.Is(err, eventlog.ErrUnknownConversation) {
		t.Errorf("Append after Delete: %v, want ErrUnknownConversation", err)
	}
	if err := log.Delete(ctx, key); err != nil {
		t.Errorf("deleting twice: %v", err)
	}
}

func fencing(t *testing.T, log eventlog.Log) {
	ctx := context.Background()
	key := NewKey("fencing")
	claim(t, log, key, 1)
	mustAppend(t, log, key, 1, Events(2, "one"))
	claim(t, log, key, 2)
	if _, err := log.Append(ctx, key, 1, Events(1, "stale")); !errors.Is(err, eventlog.ErrFenced) {
		t.Fatalf("append at epoch 1 after epoch 2 claimed: %v, want ErrFenced", err)
	}
	if _, err := log.Claim(ctx, key, 1); !errors.Is(err, eventlog.ErrFenced) {
		t.Fatalf("claim at epoch 1 after epoch 2: %v, want ErrFenced", err)
	}
	if b := bounds(t, log, key); b.LastSeq != 2 || b.Epoch != 2 {
		t.Fatalf("a fenced append wrote something: %+v", b)
	}
	if last := mustAppend(t, log, key, 2, Events(1, "two")); last != 3 {
		t.Fatalf("the new owner's append: seq %d, want 3", last)
	}
	// An append at a newer epoch than claimed raises the fence too.
	mustAppend(t, log, key, 5, Events(1, "five"))
	if _, err := log.Append(ctx, key, 2, Events(1, "stale")); !errors.Is(err, eventlog.ErrFenced) {
		t.Fatalf("append at epoch 2 after epoch 5 appended: %v, want ErrFenced", err)
	}
}

// fencingUnderConcurrency races appenders at epoch e against a claim of
// e+1. Once the claim has returned, no append at e may land: every event
// of epoch e comes before the new owner's first event, every append that
// reported success is in the log, and none that reported ErrFenced is.
func fencingUnderConcurrency(t *testing.T, log eventlog.Log, opts Options) {
	ctx := context.Background()
	key := NewKey("race")
	claim(t, log, key, 1)
	var accepted, fenced sync.Map
	for round := int64(1); round <= int64(opts.FencingRounds); round++ {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := range opts.Appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					tag := fmt.Sprintf("e%d-g%d-%d", round, g, i)
					_, err := log.Append(ctx, key, round, Events(1, tag))
					switch {
					case err == nil:
						accepted.Store(tag, round)
					case errors.Is(err, eventlog.ErrFenced):
						fenced.Store(tag, round)
						return
					default:
						t.Errorf("append %s: %v", tag, err)
						return
					}
					select {
					case <-stop:
						return
					default:
					}
				}
			}()
		}
		time.Sleep(5 * time.Millisecond)
		_, err := opts.NewOwner.Claim(ctx, key, round+1)
		var marker int64
		if err == nil {
			marker, err = opts.NewOwner.Append(ctx, key, round+1, []eventlog.Event{{Type: "claimed", Data: json.RawMessage(fmt.Sprintf(`{"tag":"claim-%d"}`, round+1))}})
		}
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("round %d: the new owner's claim and first append: %v", round, err)
		}
		// Nothing of the old epoch lands after the new owner's first event.
		for _, e := range readAll(t, log, key, marker) {
			if e.Epoch <= round {
				t.Fatalf("round %d: event %d of epoch %d landed after epoch %d claimed (at seq %d)", round, e.Seq, e.Epoch, round+1, marker)
			}
		}
	}
	events := readAll(t, log, key, 0)
	checkSeqs(t, events, 1)
	inLog := map[string]bool{}
	var lastEpoch int64
	for _, e := range events {
		if e.Epoch < lastEpoch {
			t.Fatalf("seq %d at epoch %d follows epoch %d", e.Seq, e.Epoch, lastEpoch)
		}
		lastEpoch = e.Epoch
		var d struct{ Tag string }
		_ = json.Unmarshal(e.Data, &d)
		inLog[d.Tag] = true
	}
	acceptedN, fencedN := 0, 0
	accepted.Range(func(k, _ any) bool {
		acceptedN++
		if !inLog[k.(string)] {
			t.Errorf("append %s reported success but is not in the log", k)
		}
		return true
	})
	fenced.Range(func(k, _ any) bool {
		fencedN++
		if inLog[k.(string)] {
			t.Errorf("append %s reported ErrFenced but is in the log", k)
		}
		return true
	})
	if fencedN == 0 {
		t.Error("no append was ever fenced: the race did not happen")
	}
	t.Logf("%d rounds: %d appends accepted, %d fenced", opts.FencingRounds, acceptedN, fencedN)
}

func badInput(t *testing.T, log eventlog.Log) {
	ctx := context.Background()
	key := NewKey("bad")
	claim(t, log, key, 1)
	mustAppend(t, log, key, 1, Events(1, "good"))
	huge := eventlog.Event{Type: "assistant_message", Data: json.RawMessage(`"` + strings.Repeat("x", eventlog.MaxEventBytes) + `"`)}
	cases := []struct {
		name   string
		epoch  int64
		events []eventlog.Event
	}{
		{"an event over the size limit", 1, append(Events(2, "ok"), huge)},
		{"an empty batch", 1, nil},
		{"too many events", 1, Events(eventlog.MaxBatchEvents+1, "many")},
		{"data that is not JSON", 1, []eventlog.Event{{Type: "x", Data: json.RawMessage(`{not json`)}}},
		{"no type", 1, []eventlog.Event{{Data: json.RawMessage(`{}`)}}},
		{"epoch zero", 0, Events(1, "zero")},
	}
	for _, tc := range cases {
		_, err := log.Append(ctx, key, tc.epoch, tc.events)
		if !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
	if b := bounds(t, log, key); b.LastSeq != 1 {
		t.Fatalf("bad input wrote something: %+v", b)
	}
	unknown := NewKey("never-claimed")
	if _, err := log.Append(ctx, unknown, 1, Events(1, "x")); !errors.Is(err, eventlog.ErrUnknownConversation) {
		t.Errorf("append to an unknown conversation: %v", err)
	}
	if _, err := log.Read(ctx, unknown, 0, 10); !errors.Is(err, eventlog.ErrUnknownConversation) {
		t.Errorf("read of an unknown conversation: %v", err)
	}
	if err := log.Trim(ctx, unknown, 1, 10); !errors.Is(err, eventlog.ErrUnknownConversation) {
		t.Errorf("trim of an unknown conversation: %v", err)
	}
	if _, err := log.Read(ctx, key, -1, 10); !errors.Is(err, eventlog.ErrInvalid) {
		t.Errorf("read after -1: %v", err)
	}
	if _, err := log.Claim(ctx, key, 0); !errors.Is(err, eventlog.ErrInvalid) {
		t.Errorf("claim at epoch 0: %v", err)
	}
}

func namespacesAreSeparate(t *testing.T, log eventlog.Log) {
	a := eventlog.Key{Namespace: "team-a", Name: fmt.Sprintf("same-%d", keySeq.Add(1))}
	b := eventlog.Key{Namespace: "team-b", Name: a.Name}
	claim(t, log, a, 1)
	claim(t, log, b, 7)
	mustAppend(t, log, a, 1, Events(3, "a"))
	mustAppend(t, log, b, 7, Events(1, "b"))
	if ba, bb := bounds(t, log, a), bounds(t, log, b); ba.LastSeq != 3 || bb.LastSeq != 1 || ba.Epoch != 1 || bb.Epoch != 7 {
		t.Fatalf("bounds %+v and %+v", ba, bb)
	}
}

// claimRead checks a store's ClaimRead against Claim and Read: the same
// bounds, the same events, the same fencing, whatever epoch the log had.
func claimRead(t *testing.T, log eventlog.Log, cr eventlog.ClaimReader) {
	ctx := context.Background()
	key := NewKey("claimread")
	claim(t, log, key, 1) // the log exists, in a namespace that exists
	mustAppend(t, log, key, 1, Events(5, "one"))
	check := func(epoch int64, wantLast int64) {
		t.Helper()
		b, _, events, err := cr.ClaimRead(ctx, key, epoch)
		if err != nil {
			t.Fatalf("ClaimRead at epoch %d: %v", epoch, err)
		}
		if b.Epoch != epoch || b.LastSeq != wantLast || b.FirstSeq != 1 {
			t.Fatalf("ClaimRead at epoch %d: bounds %+v, want epoch %d and events 1..%d", epoch, b, epoch, wantLast)
		}
		if want := readAll(t, log, key, 0); len(events) != len(want) {
			t.Fatalf("ClaimRead at epoch %d read %d events, Read %d", epoch, len(events), len(want))
		}
		checkSeqs(t, events, 1)
		if _, err := log.Append(ctx, key, epoch-1, Events(1, "stale")); !errors.Is(err, eventlog.ErrFenced) {
			t.Fatalf("append at epoch %d after ClaimRead at %d: %v, want ErrFenced", epoch-1, epoch, err)
		}
	}
	check(2, 5) // the epoch after the log's
	mustAppend(t, log, key, 2, Events(3, "two"))
	check(5, 8) // past an epoch no one claimed
	check(5, 8) // again at the same epoch: a restarted owner
	if _, _, _, err := cr.ClaimRead(ctx, key, 4); !errors.Is(err, eventlog.ErrFenced) {
		t.Fatalf("ClaimRead at epoch 4 after 5: %v, want ErrFenced", err)
	}
	if b := bounds(t, log, key); b.Epoch != 5 || b.LastSeq != 8 {
		t.Fatalf("after a fenced ClaimRead: %+v", b)
	}
	// More than one read's worth: all of it, in order.
	long := NewKey("claimread")
	claim(t, log, long, 1)
	for range 5 {
		mustAppend(t, log, long, 1, Events(eventlog.MaxBatchEvents, "long"))
	}
	if b, _, events, err := cr.ClaimRead(ctx, long, 2); err != nil || b.LastSeq != 5*eventlog.MaxBatchEvents || len(events) != 5*eventlog.MaxBatchEvents {
		t.Fatalf("ClaimRead of %d events: %+v, %d events, %v", 5*eventlog.MaxBatchEvents, b, len(events), err)
	} else {
		checkSeqs(t, events, 1)
	}
	fresh := NewKey("claimread")
	if b, _, events, err := cr.ClaimRead(ctx, fresh, 1); err != nil || len(events) != 0 || b.LastSeq != 0 || b.FirstSeq != 1 || b.Epoch != 1 {
		t.Fatalf("ClaimRead of a new log: %+v, %d events, %v", b, len(events), err)
	}
}

// snapshots checks that a new owner gets the newest snapshot within the
// retained history and the events after it; that a fenced owner's snapshot
// is refused and an older or useless one ignored; that a trim past the
// snapshot drops it; and that a snapshot larger than one event is kept
// whole, characters uncut.
func snapshots(t *testing.T, log eventlog.Log, cr eventlog.ClaimReader, sn eventlog.Snapshotter) {
	ctx := context.Background()
	key := NewKey("snapshots")
	claim(t, log, key, 1)
	mustAppend(t, log, key, 1, Events(10, "one"))
	// Over one event's limit, with characters of several bytes on the cuts.
	big := []byte(`{"state":"` + strings.Repeat("é€𝄞", 3*eventlog.MaxEventBytes/9) + `"}`)
	save := func(epoch, seq int64, data []byte) error {
		return sn.SaveSnapshot(ctx, key, epoch, eventlog.Snapshot{Seq: seq, Data: data})
	}
	if err := save(1, 4, []byte(`{"at":4}`)); err != nil {
		t.Fatal(err)
	}
	if err := save(1, 8, big); err != nil {
		t.Fatal(err)
	}
	if err := save(1, 6, []byte(`{"at":6}`)); err != nil { // older than the one kept: ignored
		t.Fatal(err)
	}
	if err := save(1, 11, []byte(`{"at":11}`)); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("a snapshot past the last event: %v, want ErrInvalid", err)
	}
	mustAppend(t, log, key, 1, Events(3, "two"))
	check := func(epoch int64, wantSeq int64, wantData []byte) {
		t.Helper()
		b, snap, events, err := cr.ClaimRead(ctx, key, epoch)
		if err != nil {
			t.Fatalf("ClaimRead at %d: %v", epoch, err)
		}
		from := b.FirstSeq
		if wantSeq == 0 {
			if snap != nil {
				t.Fatalf("ClaimRead at %d: a snapshot after %d, want none", epoch, snap.Seq)
			}
		} else {
			if snap == nil || snap.Seq != wantSeq || !bytes.Equal(snap.Data, wantData) {
				t.Fatalf("ClaimRead at %d: snapshot %v, want the one after %d (%d bytes)", epoch, snap != nil, wantSeq, len(wantData))
			}
			from = wantSeq + 1
		}
		if len(events) != int(b.LastSeq-from+1) {
			t.Fatalf("ClaimRead at %d: %d events, want %d..%d", epoch, len(events), from, b.LastSeq)
		}
		checkSeqs(t, events, from)
	}
	check(2, 8, big)
	if err := save(1, 12, []byte(`{"at":12}`)); !errors.Is(err, eventlog.ErrFenced) {
		t.Fatalf("a snapshot at epoch 1 after epoch 2 claimed: %v, want ErrFenced", err)
	}
	check(3, 8, big)
	// A trim past the snapshot leaves it out of the history: not used.
	mustAppend(t, log, key, 3, Events(10, "three"))
	if err := log.Trim(ctx, key, 3, 5); err != nil {
		t.Fatal(err)
	}
	check(4, 0, nil)
	if err := save(4, 20, []byte(`{"at":20}`)); err != nil {
		t.Fatal(err)
	}
	check(5, 20, []byte(`{"at":20}`))
	if err := save(5, 21, nil); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("an empty snapshot: %v, want ErrInvalid", err)
	}
}
