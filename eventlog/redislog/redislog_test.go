package redislog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/redislog"
	"tether.dev/tether/internal/testing/testredis"
)

func newLog(t testing.TB, addr string) *redislog.Log {
	t.Helper()
	log, err := redislog.New(redislog.Options{Addrs: []string{addr}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() })
	return log
}

func TestConformance(t *testing.T) {
	server := testredis.Start(t)
	eventlogtest.Run(t, newLog(t, server.Addr), eventlogtest.Options{
		FencingRounds: 30, NewOwner: newLog(t, server.Addr),
		Gated: func(gate *eventlogtest.Gate) eventlog.Log {
			log := newLog(t, server.Addr)
			log.AddHook(gateHook{gate})
			return log
		},
		DropEvent: func(key eventlog.Key, seq int64) error {
			admin := redis.NewClient(&redis.Options{Addr: server.Addr})
			defer func() { _ = admin.Close() }()
			stream := "tether:{" + key.Namespace + "/" + key.Name + "}:events"
			n, err := admin.XDel(context.Background(), stream, fmt.Sprintf("%d-0", seq)).Result()
			if err == nil && n != 1 {
				err = fmt.Errorf("no entry %d in %s", seq, stream)
			}
			return err
		},
	})
}

// gateHook passes every command to Redis through a gate, so the suite can
// freeze an owner between any two of them.
type gateHook struct{ gate *eventlogtest.Gate }

func (gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.gate.Enter()
		return next(ctx, cmd)
	}
}

func (h gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.gate.Enter()
		return next(ctx, cmds)
	}
}

// TestStoreDownMidTest stops Redis while appenders are writing: appends fail
// with a clear error (not a fencing or validation error), no append lands in
// part, and the log works again when Redis is back.
func TestStoreDownMidTest(t *testing.T) {
	server := testredis.Start(t)
	log := newLog(t, server.Addr)
	ctx := context.Background()
	key := eventlogtest.NewKey("down")
	if _, err := log.Claim(ctx, key, 1); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := log.Append(ctx, key, 1, eventlogtest.Events(3, "batch")); err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	server.Stop()
	time.Sleep(200 * time.Millisecond)
	if _, err := log.Bounds(ctx, key); err == nil {
		t.Fatal("Bounds succeeded with Redis stopped")
	}
	server.Restart()
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	if len(failures) == 0 {
		t.Fatal("no append failed while Redis was down")
	}
	for _, err := range failures {
		if errors.Is(err, eventlog.ErrFenced) || errors.Is(err, eventlog.ErrInvalid) || errors.Is(err, eventlog.ErrUnknownConversation) {
			t.Fatalf("a store outage surfaced as %v", err)
		}
	}
	t.Logf("%d appends failed during the outage; first: %v", len(failures), failures[0])

	// Every batch of 3 landed whole: the log holds a multiple of 3 events,
	// numbered without gaps, and appends work again.
	b, err := log.Bounds(ctx, key)
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if b.LastSeq%3 != 0 {
		t.Fatalf("last seq %d: a batch of 3 landed in part", b.LastSeq)
	}
	events, err := log.Read(ctx, key, 0, eventlog.MaxReadEvents)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	last, err := log.Append(ctx, key, 1, eventlogtest.Events(1, "after"))
	if err != nil || last != b.LastSeq+1 {
		t.Fatalf("append after recovery: %d, %v", last, err)
	}
}

func BenchmarkAppend(b *testing.B) {
	eventlogtest.BenchmarkAppend(b, newLog(b, testredis.Start(b).Addr))
}

func BenchmarkAppendParallel(b *testing.B) {
	eventlogtest.BenchmarkAppendParallel(b, newLog(b, testredis.Start(b).Addr))
}

func BenchmarkReadAfterN(b *testing.B) {
	eventlogtest.BenchmarkReadAfterN(b, newLog(b, testredis.Start(b).Addr))
}
