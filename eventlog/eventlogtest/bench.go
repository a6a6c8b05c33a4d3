package eventlogtest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"tether.dev/tether/eventlog"
)

// benchEvent is a typical assistant message: about 200 bytes of JSON.
var benchEvent = eventlog.Event{
	Type: "assistant_message",
	Data: json.RawMessage(`{"text":"` + strings.Repeat("lorem ipsum ", 15) + `"}`),
}

// BenchmarkAppend measures appends of one event to one conversation by one
// owner, one after another: the rate one conversation sustains.
func BenchmarkAppend(b *testing.B, log eventlog.Log) {
	ctx := context.Background()
	key := NewKey("bench-append")
	if _, err := log.Claim(ctx, key, 1); err != nil {
		b.Fatal(err)
	}
	batch := []eventlog.Event{benchEvent}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := log.Append(ctx, key, 1, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkAppendParallel measures appends across many conversations at
// once, each with its own owner: what a store sustains for a fleet.
func BenchmarkAppendParallel(b *testing.B, log eventlog.Log) {
	ctx := context.Background()
	batch := []eventlog.Event{benchEvent}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		key := NewKey("bench-parallel")
		if _, err := log.Claim(ctx, key, 1); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if _, err := log.Append(ctx, key, 1, batch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkReadAfterN measures what a reconnecting client costs: reading the
// last 100 events of a conversation that holds 1,000.
func BenchmarkReadAfterN(b *testing.B, log eventlog.Log) {
	ctx := context.Background()
	key := NewKey("bench-read")
	if _, err := log.Claim(ctx, key, 1); err != nil {
		b.Fatal(err)
	}
	batch := make([]eventlog.Event, 100)
	for i := range batch {
		batch[i] = benchEvent
	}
	for range 10 {
		if _, err := log.Append(ctx, key, 1, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		events, err := log.Read(ctx, key, 900, 100)
		if err != nil || len(events) != 100 {
			b.Fatalf("read %d events: %v", len(events), err)
		}
	}
}

// BenchmarkRestore measures what a new owner's claim costs in reads: the
// whole retained history of a conversation of 2,000 events, read from the
// start as the runtime restores it (MaxReadEvents at a time).
func BenchmarkRestore(b *testing.B, log eventlog.Log) {
	ctx := context.Background()
	key := NewKey("bench-restore")
	if _, err := log.Claim(ctx, key, 1); err != nil {
		b.Fatal(err)
	}
	batch := make([]eventlog.Event, 100)
	for i := range batch {
		batch[i] = benchEvent
	}
	for range 20 {
		if _, err := log.Append(ctx, key, 1, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n, after := 0, int64(0)
		for {
			events, err := log.Read(ctx, key, after, eventlog.MaxReadEvents)
			if err != nil {
				b.Fatal(err)
			}
			if len(events) == 0 {
				break
			}
			n += len(events)
			after = events[len(events)-1].Seq
		}
		if n != 2000 {
			b.Fatalf("read %d events, want 2000", n)
		}
	}
}
