package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"tether.dev/tether/internal/load"
)

var (
	modes     = []string{"direct", "minproxy", "gateway"}
	sockets   = flag.Int("sockets", conversations, "sockets in the throughput and latency runs (one conversation each, up to 16)")
	rate      = flag.Float64("rate", 800, "messages a second in all, for the fixed-rate latency run")
	idleConns = flag.Int("idle-sockets", 9000, "idle proxied sockets for the memory run (each costs the proxy 2 descriptors, and this process 2, of 20,000 each)")
)

// BenchmarkSocketPath runs every measurement against one rig, three ways.
func BenchmarkSocketPath(b *testing.B) {
	r := setUp(b)
	b.Run("ClosedLoop", func(b *testing.B) { closedLoop(b, r) })
	b.Run("FixedRate", func(b *testing.B) { fixedRate(b, r) })
	b.Run("IdleMemory", func(b *testing.B) { idleMemory(b, r) })
}

// closedLoop: round trips back to back on every socket; ns/op is wall time
// per round trip in all.
func closedLoop(b *testing.B, r *rig) {
	for _, mode := range modes {
		b.Run(mode, func(b *testing.B) {
			conns := dial(b, r.target(mode), *sockets)
			cpu := r.cpuMeter(b, mode)
			b.ResetTimer()
			res, err := load.ClosedLoop(conns, b.N)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.PerSecond(), "msgs/s")
			cpu.report(b, res.Messages)
		})
	}
}

// fixedRate: round trips at a moderate fixed rate; the latency quantiles
// are what a person waits. The modes take turns, ten rounds each, so that
// whatever else the machine does at some moment weighs on all three alike.
func fixedRate(b *testing.B, r *rig) {
	const rounds = 10
	conns := map[string][]*load.Conn{}
	for _, mode := range modes {
		conns[mode] = dial(b, r.target(mode), *sockets)
	}
	results := map[string][]load.Result{}
	proxyCPU := map[string]time.Duration{}
	b.ResetTimer()
	for range rounds {
		for _, mode := range modes {
			cpu := r.cpuMeter(b, mode)
			res, err := load.FixedRate(conns[mode], *rate, max(b.N/rounds, 1))
			if err != nil {
				b.Fatal(err)
			}
			results[mode] = append(results[mode], res)
			if cpu.proxy != nil {
				proxyCPU[mode] += cpu.proxy.cpu(b) - cpu.proxy0
			}
		}
	}
	b.StopTimer()
	for _, mode := range modes {
		res := load.Merge(results[mode]...)
		b.ReportMetric(float64(res.Quantile(0.5).Microseconds()), mode+"-p50-µs")
		b.ReportMetric(float64(res.Quantile(0.99).Microseconds()), mode+"-p99-µs")
		if cpu, ok := proxyCPU[mode]; ok {
			b.ReportMetric(float64(cpu.Microseconds())/float64(res.Messages), mode+"-cpu-µs/msg")
		}
	}
}

// idleMemory: memory a proxy holds per idle proxied socket (both of its
// sockets), at many sockets. It measures once per proxy process, whatever
// b.N: the testing package calls a benchmark more than once, and memory a
// first run freed stays in the process's RSS.
func idleMemory(b *testing.B, r *rig) {
	for _, mode := range modes[1:] {
		b.Run(mode, func(b *testing.B) {
			if m, ok := r.idle[mode]; ok {
				m.report(b)
				return
			}
			p := r.minproxy
			if mode == "gateway" {
				p = r.gateway
			}
			before := p.memory(b)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			target := r.target(mode)
			traffic := target.URL
			target.URL = func(int) string { return traffic(-1) } // the idle conversation
			conns, err := target.DialAll(ctx, *idleConns, 1, 64)
			if err != nil {
				b.Fatal(err)
			}
			time.Sleep(2 * time.Second) // let the handshakes' garbage become collectable
			after := p.memory(b)
			if dir := os.Getenv("TETHER_BENCH_PROFILE_DIR"); dir != "" {
				p.saveProfiles(b, dir, mode)
			}
			load.CloseAll(conns)
			n := float64(*idleConns)
			fmt.Fprintf(os.Stderr, "%s: %d idle sockets: before %+v, after %+v\n", mode, *idleConns, before, after)
			r.idle[mode] = idleResult{before: before, after: after, n: n}
			r.idle[mode].report(b)
			// Let the proxy notice the closes before the next run.
			time.Sleep(2 * time.Second)
		})
	}
}

func dial(b *testing.B, t load.Target, n int) []*load.Conn {
	b.Helper()
	conns, err := t.DialAll(context.Background(), n, conversations, 16)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { load.CloseAll(conns) })
	return conns
}

// cpuMeter measures the CPU time a run costs: the proxy's own, and the
// machine's in all (clients, runtime, control plane and proxy).
type cpuMeter struct {
	proxy          *process
	proxy0, total0 time.Duration
}

func (r *rig) cpuMeter(b *testing.B, mode string) *cpuMeter {
	m := &cpuMeter{total0: machineCPU(b)}
	switch mode {
	case "minproxy":
		m.proxy = r.minproxy
	case "gateway":
		m.proxy = r.gateway
	}
	if m.proxy != nil {
		m.proxy0 = m.proxy.cpu(b)
	}
	return m
}

func (m *cpuMeter) report(b *testing.B, messages int) {
	if messages == 0 {
		return
	}
	total := machineCPU(b) - m.total0
	b.ReportMetric(float64(total.Microseconds())/float64(messages), "cpu-µs/msg")
	if m.proxy != nil {
		b.ReportMetric(float64((m.proxy.cpu(b)-m.proxy0).Microseconds())/float64(messages), "proxy-cpu-µs/msg")
	}
}

type idleResult struct {
	before, after memoryUse
	n             float64
}

func (m idleResult) report(b *testing.B) {
	perConn := func(after, before int64) float64 { return float64(after-before) / m.n }
	b.ReportMetric(perConn(m.after.heap+m.after.stack, m.before.heap+m.before.stack), "go-B/conn")
	b.ReportMetric(perConn(m.after.heap, m.before.heap), "heap-B/conn")
	b.ReportMetric(perConn(m.after.stack, m.before.stack), "stack-B/conn")
	b.ReportMetric(perConn(m.after.rss, m.before.rss), "rss-B/conn")
	b.ReportMetric(m.n, "conns")
}
