package eventlogtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"tether.dev/tether/eventlog"
)

// maxSteps bounds the requests one operation is expected to make; an
// operation that makes more fails the test, so no step goes unvisited.
const maxSteps = 32

// prefills are the sizes the stale-owner test fills a log to before it
// freezes the owner's next append: empty, and around each layout change.
func prefills(layouts []int) []int {
	out := []int{0, 1}
	for _, n := range layouts {
		for _, p := range []int{n - 2, n - 1, n, n + 1} {
			if p > 1 {
				out = append(out, p)
			}
		}
	}
	return out
}

// acked is what an append reported: the events at seq from..from+len-1.
type acked struct {
	tag  string
	seqs []int64
}

// staleOwnerFrozenAtEveryStep freezes an owner before each request of an
// append in turn (after its commit, too, while it tidies up), lets a new
// owner claim and write past the next layout change, thaws the old owner and
// checks that nothing the new owner wrote changed: every acknowledged event
// is read back at its sequence number, the history has no hole, and the old
// owner can write nothing more.
func staleOwnerFrozenAtEveryStep(t *testing.T, log eventlog.Log, opts Options) {
	gate := NewGate()
	stale := opts.Gated(gate)
	ctx := context.Background()
	for _, pre := range prefills(opts.Layouts) {
		for step := 1; ; step++ {
			if step > maxSteps {
				t.Fatalf("an append made more than %d requests", maxSteps)
			}
			key := NewKey("stale")
			var acks []acked
			claim(t, stale, key, 1)
			if pre > 0 {
				acks = append(acks, ackOf("pre", mustAppend(t, stale, key, 1, Events(pre, "pre")), pre))
			}
			frozen := gate.Arm(step)
			type result struct {
				last int64
				err  error
			}
			done := make(chan result, 1)
			go func() {
				last, err := stale.Append(ctx, key, 1, Events(1, "stale"))
				done <- result{last, err}
			}()
			var res result
			froze := false
			select {
			case <-frozen:
				froze = true
			case res = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("prefill %d, step %d: the append neither finished nor froze", pre, step)
			}
			if froze {
				// The new owner takes over and writes past a layout change.
				claim(t, opts.NewOwner, key, 2)
				for i := range 40 {
					tag := fmt.Sprintf("new-%d", i)
					acks = append(acks, ackOf(tag, mustAppend(t, opts.NewOwner, key, 2, Events(1, tag)), 1))
				}
				gate.Thaw()
				res = <-done
			} else {
				gate.Thaw()
			}
			switch {
			case res.err == nil:
				acks = append(acks, ackOf("stale", res.last, 1))
			case !errors.Is(res.err, eventlog.ErrFenced):
				t.Fatalf("prefill %d, step %d: the frozen append failed with %v, want success or ErrFenced", pre, step, res.err)
			}
			if froze {
				// Thawed, the old owner can change nothing.
				if _, err := stale.Append(ctx, key, 1, Events(1, "after-thaw")); !errors.Is(err, eventlog.ErrFenced) {
					t.Fatalf("prefill %d, step %d: the thawed owner appended: %v", pre, step, err)
				}
				if err := stale.Trim(ctx, key, 1, 0); !errors.Is(err, eventlog.ErrFenced) {
					t.Fatalf("prefill %d, step %d: the thawed owner trimmed: %v", pre, step, err)
				}
				// The new owner goes on, and seals again if it does so.
				acks = append(acks, ackOf("new-last", mustAppend(t, opts.NewOwner, key, 2, Events(1, "new-last")), 1))
			}
			checkAcked(t, log, key, acks, fmt.Sprintf("prefill %d, step %d", pre, step))
			if !froze {
				break // every request of the append has been a freezing point
			}
		}
	}
}

func ackOf(tag string, last int64, n int) acked {
	a := acked{tag: tag}
	for i := range n {
		a.seqs = append(a.seqs, last-int64(n)+1+int64(i))
	}
	return a
}

// checkAcked reads the whole log and checks that it is 1..last without a
// hole and that every acknowledged event is at its sequence number.
func checkAcked(t *testing.T, log eventlog.Log, key eventlog.Key, acks []acked, where string) {
	t.Helper()
	b := bounds(t, log, key)
	events, err := readAllErr(log, key, 0)
	if err != nil {
		t.Fatalf("%s: reading the log back: %v", where, err)
	}
	if int64(len(events)) != b.LastSeq || (len(events) > 0 && events[0].Seq != 1) {
		t.Fatalf("%s: read %d events, the log says 1..%d", where, len(events), b.LastSeq)
	}
	checkSeqs(t, events, 1)
	for _, a := range acks {
		for _, seq := range a.seqs {
			var d struct{ Tag string }
			_ = json.Unmarshal(events[seq-1].Data, &d)
			if d.Tag != a.tag {
				t.Fatalf("%s: acknowledged event %d (%s) reads back as %q: %s", where, seq, a.tag, d.Tag, events[seq-1].Data)
			}
		}
	}
	for _, e := range events {
		var d struct{ Tag string }
		_ = json.Unmarshal(e.Data, &d)
		if d.Tag == "after-thaw" {
			t.Fatalf("%s: the thawed owner's append is in the log at %d", where, e.Seq)
		}
	}
}

func readAllErr(log eventlog.Log, key eventlog.Key, after int64) ([]eventlog.Event, error) {
	var out []eventlog.Event
	for {
		batch, err := log.Read(context.Background(), key, after, eventlog.MaxReadEvents)
		if err != nil {
			return out, err
		}
		if len(batch) == 0 {
			return out, nil
		}
		out = append(out, batch...)
		after = batch[len(batch)-1].Seq
	}
}

// staleOwnerTrim freezes an owner at each request of a trim while a new
// owner takes over: a trim that reports ErrFenced removed nothing, and the
// new owner's history stays whole either way.
func staleOwnerTrim(t *testing.T, log eventlog.Log, opts Options) {
	gate := NewGate()
	stale := opts.Gated(gate)
	ctx := context.Background()
	total := 40
	for _, l := range opts.Layouts {
		total = max(total, 2*l+8)
	}
	for step := 1; ; step++ {
		if step > maxSteps {
			t.Fatalf("a trim made more than %d requests", maxSteps)
		}
		key := NewKey("stale-trim")
		claim(t, stale, key, 1)
		for i := range total {
			mustAppend(t, stale, key, 1, Events(1, fmt.Sprintf("old-%d", i)))
		}
		frozen := gate.Arm(step)
		done := make(chan error, 1)
		go func() { done <- stale.Trim(ctx, key, 1, 5) }()
		froze := false
		var err error
		select {
		case <-frozen:
			froze = true
		case err = <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("step %d: the trim neither finished nor froze", step)
		}
		var acks []acked
		if froze {
			claim(t, opts.NewOwner, key, 2)
			for i := range 10 {
				tag := fmt.Sprintf("new-%d", i)
				acks = append(acks, ackOf(tag, mustAppend(t, opts.NewOwner, key, 2, Events(1, tag)), 1))
			}
			gate.Thaw()
			err = <-done
		} else {
			gate.Thaw()
		}
		b := bounds(t, log, key)
		switch {
		case errors.Is(err, eventlog.ErrFenced) && b.FirstSeq != 1:
			t.Fatalf("step %d: a fenced trim removed events: first retained %d", step, b.FirstSeq)
		case err != nil && !errors.Is(err, eventlog.ErrFenced):
			t.Fatalf("step %d: trim: %v", step, err)
		}
		events, rerr := readAllErr(log, key, 0)
		if rerr != nil {
			t.Fatalf("step %d: reading back: %v", step, rerr)
		}
		if int64(len(events)) != b.LastSeq-b.FirstSeq+1 {
			t.Fatalf("step %d: read %d events, the log holds %d..%d", step, len(events), b.FirstSeq, b.LastSeq)
		}
		checkSeqs(t, events, b.FirstSeq)
		for _, a := range acks {
			e := events[a.seqs[0]-b.FirstSeq]
			var d struct{ Tag string }
			_ = json.Unmarshal(e.Data, &d)
			if d.Tag != a.tag {
				t.Fatalf("step %d: the new owner's event %d reads back as %q", step, a.seqs[0], d.Tag)
			}
		}
		if !froze {
			return
		}
	}
}

// holeIsReported damages the store under a log and checks that a reader
// is told of the hole instead of being served a shorter history.
func holeIsReported(t *testing.T, log eventlog.Log, opts Options) {
	if opts.DropEvent == nil {
		t.Skip("this store cannot be damaged from outside")
	}
	total := 50
	for _, l := range opts.Layouts {
		total = max(total, 2*l+10)
	}
	for _, victim := range []int64{1, int64(total / 2), int64(total - 1)} {
		key := NewKey("hole")
		claim(t, log, key, 1)
		for i := range total {
			mustAppend(t, log, key, 1, Events(1, fmt.Sprint(i)))
		}
		if err := opts.DropEvent(key, victim); err != nil {
			t.Fatalf("damaging the store: %v", err)
		}
		for _, after := range []int64{0, victim - 1} {
			events, err := readAllErr(log, key, after)
			if !errors.Is(err, eventlog.ErrHole) {
				t.Fatalf("event %d is gone; a read after %d returned %d events and %v, want ErrHole", victim, after, len(events), err)
			}
		}
		// Past the hole, a read is whole, or reports the hole too (where
		// the damaged part of the store also holds later events); it is
		// never shorter without saying so.
		if events, err := readAllErr(log, key, victim); err == nil && int64(len(events)) != int64(total)-victim {
			t.Fatalf("a read after the hole at %d: %d events of %d, and no error", victim, len(events), int64(total)-victim)
		} else if err != nil && !errors.Is(err, eventlog.ErrHole) {
			t.Fatalf("a read after the hole at %d: %v", victim, err)
		}
	}
}

// identityNamesOneHistory: the log's identity stays across claims and
// appends and changes when the log is deleted and made again.
func identityNamesOneHistory(t *testing.T, log eventlog.Log) {
	key := NewKey("identity")
	first := claim(t, log, key, 1)
	mustAppend(t, log, key, 1, Events(3, "a"))
	if b := claim(t, log, key, 2); b.LogID != first.LogID {
		t.Fatalf("a claim changed the log's identity: %q, then %q", first.LogID, b.LogID)
	}
	if b := bounds(t, log, key); b.LogID != first.LogID {
		t.Fatalf("Bounds reports identity %q, the claim %q", b.LogID, first.LogID)
	}
	if err := log.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	again := claim(t, log, key, 1)
	if again.LogID == "" || again.LogID == first.LogID {
		t.Fatalf("a log deleted and made again kept its identity %q (now %q)", first.LogID, again.LogID)
	}
}
