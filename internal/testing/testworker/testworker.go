// Package testworker runs Tether runtimes inside a test process, each for a
// pod object whose status.podIP is the loopback address the runtime listens
// on, so the real controllers place conversations on them and the gateway
// dials them. Nothing listens anywhere but on loopback.
package testworker

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/controllers"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/internal/testing/testenv"
	"tether.dev/tether/runtime"
	"tether.dev/tether/runtime/agents"
	"tether.dev/tether/runtime/conversation"
	"tether.dev/tether/runtime/gatewayauth"
)

// The gateway's ServiceAccount in tests: test runtimes accept only its
// tokens for the runtime audience (GatewayToken), reviewed by the API
// server as in a cluster.
const (
	GatewayNamespace      = "tether-system"
	GatewayServiceAccount = "tether-gateway"
)

// GatewayIdentity is the user name the gateway's tokens authenticate as.
const GatewayIdentity = "system:serviceaccount:" + GatewayNamespace + ":" + GatewayServiceAccount

// GatewayToken returns a token of the gateway's ServiceAccount for the
// runtime audience, as the kubelet projects it into the gateway's pod.
// One is made per control plane and reused, as a gateway reuses its own.
func GatewayToken(t testing.TB, env *testenv.Env) string {
	t.Helper()
	if tok, ok := gatewayTokens.Load(env); ok {
		return tok.(string)
	}
	tok := env.ServiceAccountToken(t, GatewayNamespace, GatewayServiceAccount, gatewayauth.DefaultAudience)
	gatewayTokens.Store(env, tok)
	return tok
}

var gatewayTokens sync.Map // *testenv.Env → string

// Options describe one runtime.
type Options struct {
	Namespace, Agent, Name string
	// IP is the loopback address the runtime listens on and the pod's IP.
	IP   string
	Port int
	// Log is the event log (the kubernetes store through the runtime's own
	// API access by default).
	Log eventlog.Log
	// Config and Direct are the runtime's API access (the administrator's
	// by default).
	Config *rest.Config
	Direct client.Client
	// Handler is the agent (agents.Approval by default).
	Handler conversation.Handler
	// TLS, when set, is what the runtime serves the gateway with.
	TLS *tls.Config
	// Wrap, when set, wraps the runtime's listener below TLS: what it sees
	// is what crosses the network.
	Wrap func(net.Listener) net.Listener
	// MaxSocketsPerConversation is the runtime's cap (its default when 0).
	MaxSocketsPerConversation int
}

// Worker is a running runtime and its pod object.
type Worker struct {
	Pod  runtime.Pod
	Addr string

	stop   func()
	frozen freezer
}

// Freeze stops the runtime as SIGSTOP would: it renews no Lease, writes and
// reads nothing, and its sockets neither answer nor close, until Thaw.
func (w *Worker) Freeze() { w.frozen.freeze() }

// Thaw lets a frozen runtime go on where it stopped.
func (w *Worker) Thaw() { w.frozen.thaw() }

// Start creates a ready pod with IP o.IP and runs a runtime for it: the
// Lease keeper, the host watching the pod's conversations, and the internal
// WebSocket endpoint on o.IP:o.Port. It stops when the test ends.
func Start(t testing.TB, env *testenv.Env, o Options) *Worker {
	t.Helper()
	w := &Worker{}
	if o.Config == nil {
		o.Config = env.Config
		direct, err := client.New(w.frozen.config(o.Config), client.Options{Scheme: env.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		o.Direct = direct
	}
	o.Config = w.frozen.config(o.Config)
	if o.Log == nil {
		o.Log = kubelog.New(o.Direct)
	}
	if o.Handler == nil {
		o.Handler = agents.Approval
	}
	ctx, cancel := context.WithCancel(context.Background())
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name, Labels: map[string]string{tetherv1alpha1.AgentLabel: o.Agent}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime:test"}}},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: o.IP,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	p := runtime.Pod{Namespace: o.Namespace, Name: o.Name, UID: pod.UID, IP: o.IP, Agent: o.Agent}

	keeper := runtime.NewLeaseKeeper(o.Direct, p, 3*time.Second, nil)
	mgr, err := ctrl.NewManager(o.Config, ctrl.Options{
		Scheme: env.Scheme, Cache: runtime.CacheOptions(p),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		// Several runtimes share a test process; each has its own manager
		// with a controller of the same name.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	host := &runtime.Host{
		Client: mgr.GetClient(), Direct: o.Direct, Pod: p, Lease: keeper, Log: o.Log,
		Handler: o.Handler, BusyPolicy: tetherv1alpha1.BusyPolicyEnqueue, MaxQueued: 16,
		MaxSocketsPerConversation: o.MaxSocketsPerConversation,
	}
	if err := host.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	verifier, err := gatewayauth.New(gatewayauth.Config{Client: o.Direct, Identity: GatewayIdentity})
	if err != nil {
		t.Fatal(err)
	}
	listener, err := (&net.ListenConfig{}).Listen(ctx, "tcp", fmt.Sprintf("%s:%d", o.IP, o.Port))
	if err != nil {
		t.Fatal(err)
	}
	listener = w.frozen.listener(listener)
	if o.Wrap != nil {
		listener = o.Wrap(listener)
	}
	if o.TLS != nil {
		listener = tls.NewListener(listener, o.TLS)
	}
	server := &http.Server{Handler: &runtime.Server{Host: host, Gateway: verifier}, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{}, 3)
	go func() { _ = keeper.Run(ctx); done <- struct{}{} }()
	go func() { _ = mgr.Start(ctx); done <- struct{}{} }()
	go func() { _ = server.Serve(listener); done <- struct{}{} }()
	w.Pod, w.Addr = p, listener.Addr().String()
	stopped := false
	w.stop = func() {
		if stopped {
			return
		}
		stopped = true
		w.frozen.thaw()
		cancel()
		_ = server.Close()
		for range 3 {
			<-done
		}
	}
	t.Cleanup(w.stop)
	return w
}

// Stop stops the runtime: its Lease is released, its conversations dropped
// and their sockets closed, and it stops listening. Its pod object stays.
func (w *Worker) Stop() { w.stop() }

// FreePort finds a port free on 127.0.0.1 for an Agent's runtimePort; every
// worker listens on it at its own loopback address.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// CreateAgent creates the Agent name in ns whose pods the tests run (a
// selector on the agent label), with the given runtime port and store.
func CreateAgent(t testing.TB, c client.Client, ns, name string, port int, store tetherv1alpha1.StoreSpec) {
	t.Helper()
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: tetherv1alpha1.AgentSpec{
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: name}},
			ConversationsPerPod: 10, LeaseDurationSeconds: 3, RuntimePort: int32(port), Store: store, //nolint:gosec // a port from the kernel
		},
	}
	if err := c.Create(context.Background(), agent); err != nil {
		t.Fatal(err)
	}
}

// WaitConversation polls the Conversation until cond holds, failing after
// 15 s.
func WaitConversation(t testing.TB, c client.Client, key client.ObjectKey, what string, cond func(*tetherv1alpha1.Conversation) bool) *tetherv1alpha1.Conversation {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		conv := &tetherv1alpha1.Conversation{}
		if err := c.Get(context.Background(), key, conv); err == nil && cond(conv) {
			return conv
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, conv.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RunControllers is a testenv.Main setup that runs Tether's controllers
// in the test process, as the manager runs them.
func RunControllers(e *testenv.Env) (stop func() error, err error) {
	return StartControllers(e.Config, e.Scheme, 4)
}

// StartControllers runs Tether's controllers against cfg, as the manager
// binary sets them up, with concurrency reconciles each, until stop.
func StartControllers(cfg *rest.Config, scheme *k8sruntime.Scheme, concurrency int) (stop func() error, err error) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Cache: controllers.CacheOptions(),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := controllers.Setup(ctx, mgr, controllers.Options{Concurrency: concurrency, NotReadyGrace: 2 * time.Second}); err != nil {
		cancel()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() error { cancel(); return <-done }, nil
}

// Main runs a package's tests against one control plane with Tether's
// controllers running in the test process, logging only errors.
func Main(m *testing.M, env **testenv.Env) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	testenv.Main(m, env, RunControllers)
}
