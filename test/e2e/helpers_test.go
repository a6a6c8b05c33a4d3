package e2e

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	tetherclient "tether.dev/tether/client"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/framerec"
	"tether.dev/tether/internal/testing/localcluster"
	"tether.dev/tether/protocol"
)

var (
	runs    = flag.Int("e2e.runs", 1, "measured runs of the failover scenarios (docs/benchmarks.md uses 20)")
	ingress = flag.String("e2e.ingress", "http://10.200.0.1", "the Ingress's address")
	host    = flag.String("e2e.host", "tether.local", "the Ingress's host")
)

// cluster is how the tests reach the local cluster; they run inside its
// network namespace (make e2e).
type cluster struct {
	*localcluster.Cluster
	root string
}

func need(t *testing.T) *cluster {
	t.Helper()
	lc, ok := localcluster.FromEnv()
	if !ok {
		t.Skip("not on the local cluster: make e2e runs these tests inside its network namespace")
	}
	return &cluster{Cluster: lc, root: lc.Root}
}

func (c *cluster) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run("kubectl", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) run(tool string, args ...string) (string, error) { return c.Run(tool, args...) }

// apply applies YAML.
func (c *cluster) apply(t *testing.T, yaml string) {
	t.Helper()
	if err := c.Apply(yaml); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond every 50 ms until it holds or timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	await.UntilEvery(t, timeout, 50*time.Millisecond, what, cond)
}

var seq int

// conversation creates a conversation of the approvals Agent for alice and
// waits for its question.
func (c *cluster) conversation(t *testing.T, prefix string) string {
	t.Helper()
	return c.conversationOf(t, "approvals", prefix)
}

// conversationOf creates a conversation of an approval Agent for alice and
// waits for its question.
func (c *cluster) conversationOf(t *testing.T, agent, prefix string) string {
	t.Helper()
	seq++
	name := fmt.Sprintf("%s-%d-%d", prefix, time.Now().Unix()%100000, seq)
	c.apply(t, fmt.Sprintf(`apiVersion: tether.dev/v1alpha1
kind: Conversation
metadata: {name: %s, namespace: default}
spec:
  agentRef: {name: %s}
  subjects: [alice]
  initialInput: refund order %s
`, name, agent, name))
	eventually(t, 60*time.Second, name+" AwaitingInput", func() bool {
		out, _ := c.run("kubectl", "get", "conversation", name, "-o", "jsonpath={.status.phase}")
		return out == "AwaitingInput"
	})
	return name
}

func (c *cluster) field(t *testing.T, name, path string) string {
	t.Helper()
	return c.kubectl(t, "get", "conversation", name, "-o", "jsonpath={"+path+"}")
}

// token signs a token for alice with the gateway's HMAC secret.
func (c *cluster) token(t *testing.T) string {
	t.Helper()
	tok, err := c.Token("alice")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// recorder keeps what a client delivered.
type recorder struct {
	c *tetherclient.Client
	*framerec.Recorder
}

// connect connects a client through the Ingress.
func (c *cluster) connect(t *testing.T, name string) *recorder {
	t.Helper()
	cl := tetherclient.Connect(context.Background(), tetherclient.Config{
		URL:   strings.Replace(*ingress, "http", "ws", 1) + protocol.ConversationPath("default", name),
		Token: tetherclient.StaticToken(c.token(t)), Header: http.Header{"Host": {*host}},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
	})
	t.Cleanup(func() { _ = cl.Close() })
	r := &recorder{c: cl, Recorder: framerec.Record(cl.Frames())}
	r.Context = func() string { return fmt.Sprintf("the client: %d binds, stopped with %v", cl.Binds(), cl.Err()) }
	return r
}

// wait waits for the n-th frame satisfying want and returns it and when it
// arrived.
func (r *recorder) wait(t *testing.T, what string, n int, want func(protocol.ServerFrame) bool) (protocol.ServerFrame, time.Time) {
	t.Helper()
	return r.Wait(t, 60*time.Second, what, n, want)
}

func isPrompt(f protocol.ServerFrame) bool { return f.Type == protocol.TypePendingPrompt }

func isFinished(f protocol.ServerFrame) bool {
	return f.Type == protocol.TypeEvent && f.Event == protocol.EventFinished
}

// finish answers the prompt and checks the conversation's events arrived
// once each, in order.
func (r *recorder) finish(t *testing.T, promptID string) {
	t.Helper()
	if _, err := r.c.Answer(promptID, "approve"); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "the end", 1, isFinished)
	var got []string
	for _, f := range r.Frames() {
		if f.Type == protocol.TypeEvent {
			got = append(got, fmt.Sprintf("%d:%s", f.Seq, f.Event))
		}
	}
	want := []string{"1:user_message", "2:assistant_message", "3:prompt", "4:answer", "5:assistant_message", "6:finished"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v: each once, in order", got, want)
	}
}

// quantile of sorted durations.
func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func report(t *testing.T, what string, d []time.Duration) {
	t.Helper()
	line := fmt.Sprintf("%s: %d runs, p50 %s, p99 %s, max %s", what, len(d),
		quantile(d, 0.5).Round(time.Millisecond), quantile(d, 0.99).Round(time.Millisecond), quantile(d, 1).Round(time.Millisecond))
	t.Log(line)
	if path := os.Getenv("TETHER_E2E_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600) //nolint:gosec // the test's report
		if err == nil {
			_, _ = fmt.Fprintln(f, line)
			_ = f.Close()
		}
	}
}
