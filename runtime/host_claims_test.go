package runtime_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
)

// slowClaims is a log whose claims take a while, as a long history's do
// on a loaded API server, and which counts the claims in flight at once.
type slowClaims struct {
	eventlog.Log
	delay time.Duration

	mu             sync.Mutex
	inFlight, most int
}

func (s *slowClaims) Claim(ctx context.Context, key eventlog.Key, epoch int64) (eventlog.Bounds, error) {
	s.mu.Lock()
	s.inFlight++
	s.most = max(s.most, s.inFlight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return eventlog.Bounds{}, ctx.Err()
	}
	return s.Log.Claim(ctx, key, epoch)
}

// TestClaimsRunTogether: a pod given many conversations at once (it takes
// over a lost pod's) claims them together, not one after another. With
// claims of 1 s each, eight conversations are all running within a few
// seconds; claimed one at a time, the last would wait eight.
func TestClaimsRunTogether(t *testing.T) {
	ctx := context.Background()
	pod := newPod(t, "unused") // a namespace of its own
	ns := pod.Namespace
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreKubernetes})
	log := &slowClaims{Log: kubelog.New(env.Client), delay: time.Second}
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.16.1", Port: port, Log: log})

	const n = 8
	for i := range n {
		conv := &tetherv1alpha1.Conversation{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("refund-%d", i)},
			Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
				Subjects: []string{"alice"}, InitialInput: fmt.Sprintf("refund order %d", i)},
		}
		if err := env.Client.Create(ctx, conv); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		testworker.WaitConversation(t, env.Client, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("refund-%d", i)}, "AwaitingInput",
			func(c *tetherv1alpha1.Conversation) bool { return c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput })
	}
	log.mu.Lock()
	most := log.most
	log.mu.Unlock()
	// The manager places them over a few hundred milliseconds; claims of a
	// second each overlap whenever the host claims more than one at once.
	if most < n/2 {
		t.Fatalf("at most %d claims ran at once; want most of the %d placed together", most, n)
	}
	t.Logf("%d conversations claimed, up to %d at once", n, most)
}

// gatedClaims is a log whose claims start only when released, and which
// says when one has begun.
type gatedClaims struct {
	eventlog.Log
	begun, release chan struct{}
}

func (g *gatedClaims) Claim(ctx context.Context, key eventlog.Key, epoch int64) (eventlog.Bounds, error) {
	select {
	case g.begun <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
	case <-ctx.Done():
		return eventlog.Bounds{}, ctx.Err()
	}
	return g.Log.Claim(ctx, key, epoch)
}

// TestASocketWaitsForTheClaim: the gateway connecting a client to a pod
// whose claim of the conversation is under way is held until the claim is
// done and then served, not refused: the client has its prompt the moment
// the new owner can give it, and not when the gateway next tries.
func TestASocketWaitsForTheClaim(t *testing.T) {
	ctx := context.Background()
	ns := newPod(t, "unused").Namespace
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreKubernetes})
	log := &gatedClaims{Log: kubelog.New(env.Client), begun: make(chan struct{}, 1), release: make(chan struct{})}
	w := testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.16.2", Port: port, Log: log})
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "refund"},
		Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
			Subjects: []string{"alice"}, InitialInput: "refund order 1234"},
	}
	if err := env.Client.Create(ctx, conv); err != nil {
		t.Fatal(err)
	}
	select {
	case <-log.begun: // the runtime saw the assignment and claims
	case <-time.After(30 * time.Second):
		t.Fatal("no claim began")
	}
	type dialed struct {
		ws  *websocket.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		url := fmt.Sprintf("ws://%s%s%s/%s", w.Addr, protocol.PathPrefix, ns, "refund")
		d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 5 * time.Second}
		ws, resp, err := d.Dial(url, http.Header{"Authorization": {"Bearer " + testworker.GatewayToken(t, env)}})
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil && resp != nil {
			err = fmt.Errorf("%w (status %d)", err, resp.StatusCode)
		}
		done <- dialed{ws, err}
	}()
	await.Stays(t, 300*time.Millisecond, "the socket waits while the claim is under way", func() bool { return len(done) == 0 })
	close(log.release)
	var got dialed
	select {
	case got = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the socket was not served after the claim")
	}
	if got.err != nil {
		t.Fatalf("dialing during the claim: %v; want it served once claimed", got.err)
	}
	t.Cleanup(func() { _ = got.ws.Close() })
	next(t, got.ws, "the prompt", func(f protocol.ServerFrame) bool {
		return f.Event == protocol.EventPrompt || f.Type == protocol.TypePendingPrompt
	})
}

// TestStatusWritesStartFromTheLastOne: an owner writes a conversation's
// status from the copy it last wrote (or was handed when it claimed it),
// not from a fresh read each time: one request a write where there were
// two, and nothing weaker, since a stale copy fails on its resourceVersion.
func TestStatusWritesStartFromTheLastOne(t *testing.T) {
	ctx := context.Background()
	ns := newPod(t, "unused").Namespace
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreKubernetes})
	var mu sync.Mutex
	requests := map[string]int{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if strings.HasSuffix(req.URL.Path, "/conversations/refund") || strings.HasSuffix(req.URL.Path, "/conversations/refund/status") {
				mu.Lock()
				requests[req.Method+" "+req.URL.Path[strings.LastIndex(req.URL.Path, "/conversations/"):]]++
				mu.Unlock()
			}
			return rt.RoundTrip(req)
		})
	}
	direct, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.16.3", Port: port,
		Config: cfg, Direct: direct, Log: kubelog.New(direct)})
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "refund"},
		Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
			Subjects: []string{"alice"}, InitialInput: "refund order 1234"},
	}
	if err := env.Client.Create(ctx, conv); err != nil {
		t.Fatal(err)
	}
	testworker.WaitConversation(t, env.Client, client.ObjectKeyFromObject(conv), "AwaitingInput", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput
	})
	mu.Lock()
	defer mu.Unlock()
	reads, writes := requests["GET /conversations/refund"], requests["PUT /conversations/refund/status"]
	// Running, then AwaitingInput: two writes at least; a read only after
	// a write that lost to the manager's.
	if writes < 2 || reads >= writes {
		t.Fatalf("the owner's requests for the conversation: %v; want fewer reads than status writes", requests)
	}
	t.Logf("the owner's requests for the conversation: %v", requests)
}
