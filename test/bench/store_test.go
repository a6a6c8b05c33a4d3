package bench

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/eventlog/redislog"
	"tether.dev/tether/internal/load"
	"tether.dev/tether/internal/testing/testredis"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/agents"
)

var storeConversations = flag.Int("store-conversations", 100, "conversations talking at once in the store runs (one socket each)")

// BenchmarkStoreTurns: echo turns through the gateway, on each durable
// store, with -store-conversations conversations talking at once (one
// socket each, round trips back to back: a message until its turn's end).
// ns/op is wall time per turn in all; it reports turns/s, the turn's p50
// and p99, the appends per turn the runtime made, and for the kubernetes
// store the API writes per turn (every write of Tether's objects and of
// Leases the API server counted meanwhile, from its own metrics).
func BenchmarkStoreTurns(b *testing.B) {
	for _, store := range []string{"kubernetes", "redis"} {
		// Made with the parent, which runs once: a sub-benchmark runs
		// several times, and what it starts stops with each run.
		r := newStoreRig(b, store)
		b.Run(store, func(b *testing.B) {
			target := load.Target{URL: func(i int) string {
				return "ws://" + r.gateway.addr + protocol.ConversationPath(r.ns, fmt.Sprintf("c-%d", i))
			}, Header: http.Header{"Authorization": {"Bearer " + r.token}}}
			conns, err := target.DialAll(context.Background(), *storeConversations, *storeConversations, 16)
			if err != nil {
				b.Fatal(err)
			}
			defer load.CloseAll(conns)
			writes, appends := apiWrites(b), r.log.count()
			b.ResetTimer()
			res, err := load.ClosedLoop(conns, b.N)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.PerSecond(), "turns/s")
			b.ReportMetric(float64(res.Quantile(0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(res.Quantile(0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(r.log.count()-appends)/float64(res.Messages), "appends/turn")
			b.ReportMetric(float64(apiWrites(b)-writes)/float64(res.Messages), "api-writes/turn")
		})
	}
}

// storeRig is an echo Agent on one store with its conversations, and a
// gateway in front.
type storeRig struct {
	ns      string
	log     *countedLog
	gateway *process
	token   string
}

func newStoreRig(b *testing.B, store string) *storeRig {
	ctx := context.Background()
	r := &storeRig{ns: "bench-" + store}
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.ns}}); err != nil {
		b.Fatal(err)
	}
	spec := tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreKubernetes}
	var log eventlog.Log = kubelog.New(env.Client)
	if store == "redis" {
		addr := testredis.Start(b).Addr
		spec = tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreRedis, Redis: &tetherv1alpha1.RedisStoreSpec{Addresses: []string{addr}}}
		rl, err := redislog.New(redislog.Options{Addrs: []string{addr}})
		if err != nil {
			b.Fatal(err)
		}
		log = rl
	}
	r.log = &countedLog{Log: log}
	port := testworker.FreePort(b)
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.ns, Name: "echo"},
		Spec: tetherv1alpha1.AgentSpec{
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: "echo"}},
			ConversationsPerPod: int32(*storeConversations), LeaseDurationSeconds: 10, RuntimePort: int32(port), //nolint:gosec // small, and a port from the kernel
			Store: spec,
		},
	}
	if err := env.Client.Create(ctx, agent); err != nil {
		b.Fatal(err)
	}
	testworker.Start(b, env, testworker.Options{Namespace: r.ns, Agent: "echo", Name: "echo-0", IP: "127.0.31.1", Port: port,
		Log: r.log, Handler: agents.Echo})
	for i := range *storeConversations {
		conv := &tetherv1alpha1.Conversation{
			ObjectMeta: metav1.ObjectMeta{Namespace: r.ns, Name: fmt.Sprintf("c-%d", i)},
			Spec:       tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "echo"}, Subjects: []string{"bench"}},
		}
		if err := env.Client.Create(ctx, conv); err != nil {
			b.Fatal(err)
		}
	}
	for i := range *storeConversations {
		testworker.WaitConversation(b, env.Client, client.ObjectKey{Namespace: r.ns, Name: fmt.Sprintf("c-%d", i)}, "Running", func(c *tetherv1alpha1.Conversation) bool {
			return c.Status.Phase == tetherv1alpha1.PhaseRunning && c.Status.Owner != nil
		})
	}
	dir := b.TempDir()
	r.gateway = startGateway(b, dir)
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "bench", Audience: jwt.ClaimStrings{audience}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(24 * time.Hour)),
	}).SignedString([]byte(hmacSecret))
	if err != nil {
		b.Fatal(err)
	}
	r.token = token
	return r
}

// countedLog counts the appends the runtime makes.
type countedLog struct {
	eventlog.Log
	mu sync.Mutex
	n  int
}

func (l *countedLog) Append(ctx context.Context, k eventlog.Key, epoch int64, events []eventlog.Event) (int64, error) {
	l.mu.Lock()
	l.n++
	l.mu.Unlock()
	return l.Log.Append(ctx, k, epoch, events)
}

func (l *countedLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// apiWrites is the API server's count of writes of stored objects so far
// (apiserver_request_total for POST, PUT, PATCH and DELETE of Tether's
// objects and Leases).
func apiWrites(tb testing.TB) int {
	tb.Helper()
	hc, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := hc.Get(strings.TrimSuffix(env.Config.Host, "/") + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		write := false
		for _, verb := range []string{`verb="POST"`, `verb="PUT"`, `verb="PATCH"`, `verb="DELETE"`} {
			write = write || strings.Contains(line, verb)
		}
		// Stored objects only: Tether's and the Leases (token and access
		// reviews are POSTs that store nothing).
		if !write || !strings.Contains(line, `group="tether.dev"`) && !strings.Contains(line, `resource="leases"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			total += v
		}
	}
	return int(total)
}
