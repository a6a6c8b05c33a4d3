package redislog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/redislog"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testredis"
)

// The store on a distributed Redis: a Redis Cluster of three masters with a
// replica each, and a master with a replica watched by three Sentinels, all
// started from Debian's redis-server on loopback ports.

func clusterLog(t testing.TB, c *testredis.Cluster, minReplicas int) *redislog.Log {
	t.Helper()
	log, err := redislog.New(redislog.Options{Addrs: c.Addrs, Timeout: 2 * time.Second, MinReplicas: minReplicas})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() })
	return log
}

// sentinelLog waits for a replica on every write, as a replicated Redis
// should be used (docs/operations.md).
func sentinelLog(t *testing.T, s *testredis.Sentinel) *redislog.Log {
	t.Helper()
	log, err := redislog.New(redislog.Options{Addrs: s.Addrs, MasterName: s.MasterName, Timeout: 2 * time.Second, MinReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() })
	return log
}

func TestConformanceOnACluster(t *testing.T) {
	c := testredis.StartCluster(t, 3, 1)
	eventlogtest.Run(t, clusterLog(t, c, 0), eventlogtest.Options{FencingRounds: 20, NewOwner: clusterLog(t, c, 0)})
}

func TestConformanceOnAClusterWaitingForAReplica(t *testing.T) {
	c := testredis.StartCluster(t, 3, 1)
	eventlogtest.Run(t, clusterLog(t, c, 1), eventlogtest.Options{FencingRounds: 20, NewOwner: clusterLog(t, c, 1)})
}

func TestConformanceOnSentinel(t *testing.T) {
	s := testredis.StartSentinel(t)
	eventlogtest.Run(t, sentinelLog(t, s), eventlogtest.Options{FencingRounds: 20, NewOwner: sentinelLog(t, s)})
}

// TestFailoverInTheMiddleOfAppends: an owner appends without pause while
// its conversation's master is killed; a replica is promoted, the killed
// server comes back as its replica (as its pod would), and appends go on.
// With MinReplicas 1 every append that was acknowledged is in the log after
// the failover, exactly once, in order (appends fail while the promoted
// master has no replica); and a new owner's claim still fences the old one.
func TestFailoverInTheMiddleOfAppends(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setUp func(t *testing.T, key eventlog.Key) (log, other *redislog.Log, kill func())
	}{
		{"sentinel", func(t *testing.T, _ eventlog.Key) (*redislog.Log, *redislog.Log, func()) {
			s := testredis.StartSentinel(t)
			return sentinelLog(t, s), sentinelLog(t, s), func() {
				s.Master.Kill()
				sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addrs[0]})
				defer func() { _ = sc.Close() }()
				waitFor(t, 30*time.Second, "the replica promoted", func() bool {
					addr, err := sc.GetMasterAddrByName(context.Background(), s.MasterName).Result()
					return err == nil && addr[0]+":"+addr[1] == s.Replica.Addr
				})
				// As its pod would be: back, and made a replica of the
				// new master, so that appends find a replica again.
				s.Master.Restart()
			}
		}},
		{"cluster", func(t *testing.T, key eventlog.Key) (*redislog.Log, *redislog.Log, func()) {
			c := testredis.StartCluster(t, 3, 1)
			// The master of the conversation's slot (the log's keys share
			// one hash tag: tether:{namespace/name}).
			cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
			defer func() { _ = cc.Close() }()
			master, err := cc.MasterForKey(context.Background(), "tether:{"+key.Namespace+"/"+key.Name+"}:meta")
			if err != nil {
				t.Fatal(err)
			}
			var victim *testredis.Server
			for _, m := range c.Masters {
				if m.Addr == master.Options().Addr {
					victim = m
				}
			}
			if victim == nil {
				t.Fatalf("no master at %s", master.Options().Addr)
			}
			return clusterLog(t, c, 1), clusterLog(t, c, 1), func() {
				victim.Kill()
				cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
				defer func() { _ = cc.Close() }()
				waitFor(t, 30*time.Second, "the replica promoted", func() bool {
					cc.ReloadState(context.Background())
					m, err := cc.MasterForKey(context.Background(), "tether:{"+key.Namespace+"/"+key.Name+"}:meta")
					return err == nil && m.Options().Addr != victim.Addr && m.Ping(context.Background()).Err() == nil
				})
				victim.Restart() // back, as a replica of the promoted one
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := eventlogtest.NewKey("failover")
			log, other, kill := tc.setUp(t, key)
			ctx := context.Background()
			if _, err := log.Claim(ctx, key, 1); err != nil {
				t.Fatal(err)
			}
			var (
				mu     sync.Mutex
				acked  []int
				failed int
			)
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					e := eventlog.Event{Type: "assistant_message", Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
					if _, err := log.Append(ctx, key, 1, []eventlog.Event{e}); err != nil {
						mu.Lock()
						failed++
						mu.Unlock()
						time.Sleep(50 * time.Millisecond)
						continue
					}
					mu.Lock()
					acked = append(acked, i)
					mu.Unlock()
				}
			}()
			count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
			waitFor(t, 10*time.Second, "appends before the failover", func() bool { return count() >= 50 })
			kill()
			before := count()
			waitFor(t, 60*time.Second, "appends acknowledged again after the failover", func() bool { return count() >= before+50 })
			close(stop)
			<-done

			var got []eventlog.Event
			for after := int64(0); ; {
				batch, err := other.Read(ctx, key, after, eventlog.MaxReadEvents)
				if err != nil {
					t.Fatal(err)
				}
				if len(batch) == 0 {
					break
				}
				got = append(got, batch...)
				after = batch[len(batch)-1].Seq
			}
			seen := map[int]int{}
			last := -1
			for n, e := range got {
				if e.Seq != int64(n+1) {
					t.Fatalf("event %d has seq %d", n, e.Seq)
				}
				var d struct{ I int }
				_ = json.Unmarshal(e.Data, &d)
				seen[d.I]++
				if d.I <= last {
					t.Fatalf("append %d after append %d", d.I, last)
				}
				last = d.I
			}
			mu.Lock()
			defer mu.Unlock()
			for _, i := range acked {
				if seen[i] != 1 {
					t.Fatalf("acknowledged append %d is in the log %d times (%d acknowledged, %d failed, %d in the log)", i, seen[i], len(acked), failed, len(got))
				}
			}
			t.Logf("%d appends acknowledged (%d before the kill), %d failed during the failover, %d in the log", len(acked), before, failed, len(got))

			// Fencing holds on the promoted replica.
			if _, err := other.Claim(ctx, key, 2); err != nil {
				t.Fatal(err)
			}
			if _, err := log.Append(ctx, key, 1, eventlogtest.Events(1, "stale")); !errors.Is(err, eventlog.ErrFenced) {
				t.Fatalf("the old owner's append after the new claim: %v, want ErrFenced", err)
			}
		})
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	await.Until(t, timeout, what, cond)
}

// The store's throughput on a Cluster of three masters with a replica
// each, without and with waiting for the replica (docs/benchmarks.md).
func BenchmarkClusterAppend(b *testing.B) {
	eventlogtest.BenchmarkAppend(b, clusterLog(b, testredis.StartCluster(b, 3, 1), 0))
}

func BenchmarkClusterAppendParallel(b *testing.B) {
	eventlogtest.BenchmarkAppendParallel(b, clusterLog(b, testredis.StartCluster(b, 3, 1), 0))
}

func BenchmarkClusterAppendWaitingForAReplica(b *testing.B) {
	eventlogtest.BenchmarkAppend(b, clusterLog(b, testredis.StartCluster(b, 3, 1), 1))
}

func BenchmarkClusterAppendParallelWaitingForAReplica(b *testing.B) {
	eventlogtest.BenchmarkAppendParallel(b, clusterLog(b, testredis.StartCluster(b, 3, 1), 1))
}
