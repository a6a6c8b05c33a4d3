package testredis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster this test started on loopback ports: masters
// that share the 16,384 slots, each with its replicas.
type Cluster struct {
	Masters  []*Server
	Replicas []*Server // Replicas[i] replicates Masters[i % len(Masters)]
	// Addrs are every node's address, for a cluster client's seeds.
	Addrs []string
}

// StartCluster starts masters x (1 + replicas) cluster-enabled servers,
// gives the masters the slots in equal ranges, joins them and makes the
// replicas replicate, and waits until every node says the cluster is ok.
// A node that stops answering for a second is failed over.
func StartCluster(tb testing.TB, masters, replicas int) *Cluster {
	tb.Helper()
	c := &Cluster{}
	buses := map[*Server]int{}
	node := func() *Server {
		dir := tb.TempDir()
		// The cluster bus listens on a port of its own, chosen free as the
		// server's is: its default, the server's port plus 10,000, may be
		// taken or past 65,535.
		bus := freePort(tb)
		s := startServer(tb, "", "--cluster-enabled", "yes", "--cluster-config-file", dir+"/nodes.conf", "--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0", "--repl-diskless-sync-delay", "0")
		buses[s] = bus
		c.Addrs = append(c.Addrs, s.Addr)
		return s
	}
	for range masters {
		c.Masters = append(c.Masters, node())
	}
	for range masters * replicas {
		c.Replicas = append(c.Replicas, node())
	}
	ctx := context.Background()
	do := func(s *Server, args ...any) string {
		tb.Helper()
		cl := redis.NewClient(&redis.Options{Addr: s.Addr})
		defer func() { _ = cl.Close() }()
		v, err := cl.Do(ctx, args...).Text()
		if err != nil {
			tb.Fatalf("%s %v: %v", s.Addr, args, err)
		}
		return v
	}
	per := 16384 / masters
	for i, m := range c.Masters {
		last := (i+1)*per - 1
		if i == masters-1 {
			last = 16383
		}
		do(m, "cluster", "addslotsrange", i*per, last)
	}
	all := append(append([]*Server{}, c.Masters...), c.Replicas...)
	for _, s := range all[1:] {
		do(all[0], "cluster", "meet", "127.0.0.1", s.port, buses[s])
	}
	waitUntil(tb, 30*time.Second, "every node knows every other", func() bool {
		for _, s := range all {
			if strings.Count(strings.TrimSpace(do(s, "cluster", "nodes")), "\n")+1 != len(all) {
				return false
			}
		}
		return true
	})
	for i, r := range c.Replicas {
		do(r, "cluster", "replicate", do(c.Masters[i%masters], "cluster", "myid"))
	}
	waitUntil(tb, 30*time.Second, "the cluster ok, every master with its replicas", func() bool {
		for _, s := range all {
			if !strings.Contains(do(s, "cluster", "info"), "cluster_state:ok") {
				return false
			}
		}
		for _, m := range c.Masters {
			info := do(m, "info", "replication")
			if !strings.Contains(info, fmt.Sprintf("connected_slaves:%d", replicas)) || strings.Count(info, "state=online") != replicas {
				return false
			}
		}
		return true
	})
	return c
}

// Sentinel is a master with a replica, watched by three Sentinels.
type Sentinel struct {
	Master, Replica *Server
	Sentinels       []*Server
	// Addrs are the Sentinels' addresses; MasterName the master's name.
	Addrs      []string
	MasterName string
}

// StartSentinel starts a master, a replica of it and three Sentinels
// (quorum 2) that fail the master over once it has not answered for a
// second, and waits until they all see the replica and each other and the
// replica is in sync.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	st := &Sentinel{MasterName: "tether"}
	// A replica's first sync starts at once (not after the 5 s Redis waits
	// for more replicas by default).
	st.Master = startServer(tb, "", "--repl-diskless-sync-delay", "0")
	st.Replica = startServer(tb, "", "--replicaof", "127.0.0.1", fmt.Sprint(st.Master.port))
	for range 3 {
		s := &Server{dir: tb.TempDir(), tb: tb, sentinel: true}
		s.port = freePort(tb)
		s.Addr = fmt.Sprintf("127.0.0.1:%d", s.port)
		s.sentinelConf = fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2\nsentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n", st.MasterName, st.Master.port, st.MasterName, st.MasterName, st.MasterName)
		s.start()
		tb.Cleanup(s.Stop)
		st.Sentinels = append(st.Sentinels, s)
		st.Addrs = append(st.Addrs, s.Addr)
	}
	ctx := context.Background()
	waitUntil(tb, 30*time.Second, "the Sentinels see the replica and each other", func() bool {
		for _, s := range st.Sentinels {
			sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
			replicas, err1 := sc.Replicas(ctx, st.MasterName).Result()
			sentinels, err2 := sc.Sentinels(ctx, st.MasterName).Result()
			_ = sc.Close()
			if err1 != nil || err2 != nil || len(replicas) != 1 || len(sentinels) != 2 {
				return false
			}
		}
		m := redis.NewClient(&redis.Options{Addr: st.Master.Addr})
		defer func() { _ = m.Close() }()
		return strings.Contains(m.Info(ctx, "replication").Val(), "state=online")
	})
	return st
}

func waitUntil(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
