package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/gateway"
	"tether.dev/tether/gateway/auth"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
)

var (
	secret = []byte("gateway-test-secret-0123456789abcdef")
	nsSeq  atomic.Int64
)

const audience = "tether-test"

// token signs a token for subject, valid for an hour unless mutated.
func token(t testing.TB, subject string, mutate ...func(*jwt.RegisteredClaims)) string {
	t.Helper()
	c := jwt.RegisteredClaims{Subject: subject, Audience: jwt.ClaimStrings{audience}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}
	for _, m := range mutate {
		m(&c)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// gw is a gateway serving on a loopback port.
type gw struct {
	srv  *gateway.Server
	http *http.Server
	addr string
}

// startGateway runs a gateway with its own Conversation cache, as a replica
// would.
func startGateway(t testing.TB, mutate ...func(*gateway.Config)) *gw {
	t.Helper()
	return startGatewayAs(t, env.Config, mutate...)
}

// startGatewayAs runs a gateway whose API access is restConfig's.
func startGatewayAs(t testing.TB, restConfig *rest.Config, mutate ...func(*gateway.Config)) *gw {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir, err := gateway.NewDirectory(restConfig, gateway.DirectoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.Start(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{HMACSecret: secret, Audience: audience, AllowedOrigins: []string{"https://chat.example"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{Auth: a, Conversations: dir, UpstreamToken: gateway.StaticToken(testworker.GatewayToken(t, env)), HoldTimeout: 20 * time.Second}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := gateway.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gw{srv: srv, http: &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second, ConnState: srv.TrackConn}, addr: l.Addr().String()}
	go func() { _ = g.http.Serve(l) }()
	t.Cleanup(func() {
		_ = g.http.Close()
		drainCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = srv.Drain(drainCtx)
		cancel()
	})
	return g
}

func (g *gw) url(ns, name string) string {
	return "ws://" + g.addr + protocol.ConversationPath(ns, name)
}

// namespace creates a namespace for one test.
func namespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gateway-test-%d", nsSeq.Add(1))}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// createConversation creates an approval conversation alice may use.
func createConversation(t testing.TB, ns, name string) client.ObjectKey {
	t.Helper()
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
			Subjects: []string{"alice"}, InitialInput: "refund order " + name},
	}
	if err := env.Client.Create(context.Background(), conv); err != nil {
		t.Fatal(err)
	}
	return client.ObjectKeyFromObject(conv)
}

func awaiting(owner string) func(*tetherv1alpha1.Conversation) bool {
	return func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput && c.Status.Owner != nil && c.Status.Owner.Name == owner
	}
}

// dialRaw connects a plain WebSocket to the gateway; status is the HTTP
// status of a refused handshake.
func dialRaw(t testing.TB, url string, header http.Header) (ws *websocket.Conn, status int, err error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(url, header)
	if resp != nil {
		status = resp.StatusCode
		if resp.Body != nil {
			_ = resp.Body.Close()
		}
	}
	if ws != nil {
		t.Cleanup(func() { _ = ws.Close() })
	}
	return ws, status, err
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// readFrame reads one frame, failing after 10 s.
func readFrame(t testing.TB, ws *websocket.Conn) (protocol.ServerFrame, error) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		return protocol.ServerFrame{}, err
	}
	var f protocol.ServerFrame
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("bad frame %s: %v", data, err)
	}
	return f, nil
}

// closeCode reads until the socket closes and returns its close code.
func closeCode(t testing.TB, ws *websocket.Conn) int {
	t.Helper()
	for {
		if _, err := readFrame(t, ws); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			t.Fatalf("socket ended with %v, not a close frame", err)
		}
	}
}

// balancer stands for the Service or ingress in front of gateway replicas:
// it forwards each TCP connection to a live backend, and can cut every
// connection at once, as a network blip or a killed replica does.
type balancer struct {
	l net.Listener

	mu       sync.Mutex
	backends []string
	down     map[string]bool
	conns    map[net.Conn]string
	next     int
}

func newBalancer(t testing.TB, backends ...string) *balancer {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{l: l, backends: backends, down: map[string]bool{}, conns: map[net.Conn]string{}}
	go b.serve()
	t.Cleanup(func() { _ = l.Close(); b.cut("") })
	return b
}

func (b *balancer) url(ns, name string) string {
	return "ws://" + b.l.Addr().String() + protocol.ConversationPath(ns, name)
}

func (b *balancer) serve() {
	for {
		in, err := b.l.Accept()
		if err != nil {
			return
		}
		go b.forward(in)
	}
}

func (b *balancer) forward(in net.Conn) {
	b.mu.Lock()
	var backend string
	for range b.backends {
		candidate := b.backends[b.next%len(b.backends)]
		b.next++
		if !b.down[candidate] {
			backend = candidate
			break
		}
	}
	b.mu.Unlock()
	if backend == "" {
		_ = in.Close()
		return
	}
	out, err := (&net.Dialer{Timeout: 2 * time.Second}).Dial("tcp", backend)
	if err != nil {
		_ = in.Close()
		return
	}
	b.mu.Lock()
	b.conns[in], b.conns[out] = backend, backend
	b.mu.Unlock()
	go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
	_, _ = io.Copy(in, out)
	_ = in.Close()
	b.mu.Lock()
	delete(b.conns, in)
	delete(b.conns, out)
	b.mu.Unlock()
}

// cut closes every connection to backend ("" for all).
func (b *balancer) cut(backend string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c, to := range b.conns {
		if backend == "" || to == backend {
			_ = c.Close()
		}
	}
}

// kill marks a backend dead and cuts its connections.
func (b *balancer) kill(backend string) {
	b.mu.Lock()
	b.down[backend] = true
	b.mu.Unlock()
	b.cut(backend)
}

func kubeLog() *kubelog.Log { return kubelog.New(env.Client) }

// waitLong is WaitConversation for what takes the controller longer than
// 15 s (idle suspension after at least 10 s).
func waitLong(t *testing.T, key client.ObjectKey, what string, cond func(*tetherv1alpha1.Conversation) bool) *tetherv1alpha1.Conversation {
	t.Helper()
	conv := &tetherv1alpha1.Conversation{}
	await.UntilEvery(t, 40*time.Second, 50*time.Millisecond, what, func() bool {
		conv = &tetherv1alpha1.Conversation{}
		return env.Client.Get(context.Background(), key, conv) == nil && cond(conv)
	})
	return conv
}

// gatewayUser is a user bound cluster-wide to the generated gateway-role
// (config/gateway/role.yaml) and nothing else, as the chart binds the
// gateway's ServiceAccount.
func gatewayUser(t testing.TB) *rest.Config {
	t.Helper()
	ctx := context.Background()
	role := env.GeneratedRole(t, "config/gateway/role.yaml", "tether-gateway-test")
	const user = "gateway-under-its-role"
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tether-gateway-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if err := env.Client.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cfg, err := env.UserConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// awaitingOnOneRuntime sets up a namespace with the approvals Agent on the
// kubernetes store, one runtime listening on ip, and conversation name
// awaiting alice's answer on it; it returns the namespace.
func awaitingOnOneRuntime(t *testing.T, ip, name string) string {
	t.Helper()
	ns := namespace(t)
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{})
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: ip, Port: port, Log: kubeLog()})
	key := createConversation(t, ns, name)
	testworker.WaitConversation(t, env.Client, key, "AwaitingInput", awaiting("approvals-a"))
	return ns
}

// createIdlingAgent creates the approvals Agent of ns, whose conversations
// are suspended after the least idleSuspendSeconds allowed (10).
func createIdlingAgent(t *testing.T, ns string, port int) {
	t.Helper()
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvals"},
		Spec: tetherv1alpha1.AgentSpec{
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: "approvals"}},
			ConversationsPerPod: 10, LeaseDurationSeconds: 3, RuntimePort: int32(port), IdleSuspendSeconds: ptr.To[int32](10), //nolint:gosec // a port from the kernel
		},
	}
	if err := env.Client.Create(context.Background(), agent); err != nil {
		t.Fatal(err)
	}
}
