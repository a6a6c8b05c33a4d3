package chaos

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/localcluster"
)

var (
	duration  = flag.Duration("chaos.duration", 4*time.Minute, "how long faults are injected")
	maxFaults = flag.Int("chaos.faults", 0, "stop once this many faults took effect (0: only the duration bounds the run)")
	stopFile  = flag.String("chaos.stop", "", "once this file exists, no more faults: the run settles, audits and reports what it did (a long run that must end early)")
	perAgent  = flag.Int("chaos.conversations", 3, "clients (each with its own conversation) per Agent")
	lease     = flag.Duration("chaos.lease", 4*time.Second, "the Agents' Lease")
	seed      = flag.Uint64("chaos.seed", 0, "the random seed (0: from the clock); the run prints it")
	kinds     = flag.String("chaos.kinds", "", "comma-separated fault kinds to inject (empty: all)")
	ingress   = flag.String("chaos.ingress", "ws://10.200.0.1", "the Ingress's address")
	host      = flag.String("chaos.host", "tether.local", "the Ingress's host")
	settleCap = flag.Duration("chaos.settle", 20*time.Second, "after a fault, wait at most this long for every conversation to be owned by a ready pod before the next")
	report    = flag.String("chaos.report", "", "append the run's report (Markdown) to this file")
)

// ns is where the chaos Agents and conversations live.
const ns = "default"

// auditor is the subject that reads every conversation's log back; each
// client talks as a subject of its own.
const auditor = "chaos-auditor"

// agentKind is one of the Agents the suite runs: its example agent and
// its store.
type agentKind struct {
	name, agent, store string
}

var agentKinds = []agentKind{
	{name: "chaos-echo-kube", agent: "echo", store: "kubernetes"},
	{name: "chaos-echo-redis", agent: "echo", store: "redis"},
	{name: "chaos-approval-kube", agent: "approval", store: "kubernetes"},
	{name: "chaos-approval-redis", agent: "approval", store: "redis"},
	{name: "chaos-python-kube", agent: "python", store: "kubernetes"},
	{name: "chaos-python-redis", agent: "python", store: "redis"},
}

// world is the cluster the suite runs on.
type world struct {
	*localcluster.Cluster
	kube client.WithWatch
	// token is for reading logs back; each client has its own subject.
	token string
	redis string // the Redis Service's address
	rng   *rand.Rand
	start time.Time
	// killedLeader is the manager leader identity a fault killed last: no
	// fault starts while the Lease still names it.
	killedLeader string
	// killedRedis is the Redis pod a fault killed last, and its container's
	// restarts before: no fault starts until it has restarted and is ready
	// (its status says ready until the kubelet notices the kill).
	killedRedis         string
	killedRedisRestarts int32
}

var setLogger sync.Once

func newWorld(t *testing.T) *world {
	t.Helper()
	lc, ok := localcluster.FromEnv()
	if !ok {
		t.Skip("not on the local cluster: make chaos runs this suite inside its network namespace")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", lc.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	// The client logs through controller-runtime's logger: errors only,
	// and no warning with a stack trace that it was never set.
	setLogger.Do(func() { ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel))) })
	scheme := runtime.NewScheme()
	if err := appsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := coordinationv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := tetherv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	kube, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	token, err := lc.Token(auditor)
	if err != nil {
		t.Fatal(err)
	}
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano()) //nolint:gosec // a seed, printed
	}
	t.Logf("seed %d (rerun with -chaos.seed=%d)", s, s)
	return &world{Cluster: lc, kube: kube, token: token, rng: rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15)), start: time.Now()} //nolint:gosec // fault choices, not secrets
}

func (w *world) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := w.Run("kubectl", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (w *world) apply(t *testing.T, yaml string) {
	t.Helper()
	if err := w.Apply(yaml); err != nil {
		t.Fatal(err)
	}
}

// redisManifest is Redis for the redis store, on the first node with the
// API server (a node-loss fault is a worker node's): its data in an
// emptyDir that outlives a restart of its container, every write on disk
// before it is acknowledged.
const redisManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: chaos-redis, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: chaos-redis}}
  template:
    metadata: {labels: {app: chaos-redis}}
    spec:
      nodeSelector: {kubernetes.io/hostname: tether-node}
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: redis
          image: tether-redis:0.1.0
          imagePullPolicy: Never
          args: [--port, "6379", --protected-mode, "no", --dir, /data, --appendonly, "yes", --appendfsync, always, --save, ""]
          ports: [{containerPort: 6379}]
          readinessProbe: {tcpSocket: {port: 6379}, periodSeconds: 1}
          volumeMounts: [{name: data, mountPath: /data}]
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: chaos-redis, namespace: default}
spec:
  selector: {app: chaos-redis}
  ports: [{port: 6379}]
`

// agentManifest is an Agent of kind k: two pods, one on each node (a spread
// the scheduler must keep: the default is soft, and the scheduler, scoring
// the first node's load, would now and then put both on the second, so a
// lost node left nowhere to move to).
// The python kind is the Python SDK's refund example (an agent that is not
// deterministic, in an image of its own, the runtime injected beside it);
// the others are the runtime's built-in examples.
func (w *world) agentManifest(k agentKind) string {
	// Echo conversations keep 1,000 events: they pass it within minutes,
	// so every run trims logs while faults hit, and audits what was kept.
	retention := ""
	if k.agent == "echo" {
		retention = ", retention: {maxEvents: 1000}"
	}
	store := "{type: kubernetes" + retention + "}"
	if k.store == "redis" {
		store = fmt.Sprintf("{type: redis, redis: {addresses: [%q]}%s}", w.redis, retention)
	}
	container := fmt.Sprintf(`        - name: runtime
          image: tether-runtime:0.1.0
          imagePullPolicy: Never
          args: [--agent=%s]`, k.agent)
	agentContainer := ""
	if k.agent == "python" {
		agentContainer = "\n  agentContainer: agent"
		container = `        - name: agent
          image: tether-python-agent:0.1.0
          imagePullPolicy: Never
          command: [/usr/bin/python3, /sdk/examples/refund_agent.py]`
	}
	return fmt.Sprintf(`apiVersion: tether.dev/v1alpha1
kind: Agent
metadata: {name: %s, namespace: default}
spec:
  replicas: 2
  conversationsPerPod: 100
  leaseDurationSeconds: %d
  runtimePort: 8080
  store: %s%s
  template:
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, nodeTaintsPolicy: Honor, labelSelector: {matchLabels: {tether.dev/agent: %s}}}
      containers:
%s
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`, k.name, int(lease.Seconds()), store, agentContainer, k.name, container)
}

// setUp starts Redis and the Agents, and waits for their pods.
func (w *world) setUp(t *testing.T) {
	t.Helper()
	w.apply(t, redisManifest)
	w.redis = w.kubectl(t, "-n", ns, "get", "service", "chaos-redis", "-o", "jsonpath={.spec.clusterIP}") + ":6379"
	w.kubectl(t, "-n", ns, "rollout", "status", "deployment/chaos-redis", "--timeout=120s")
	for _, k := range agentKinds {
		w.apply(t, w.agentManifest(k))
	}
	for _, k := range agentKinds {
		await.UntilEvery(t, 180*time.Second, 200*time.Millisecond, k.name+": 2 ready pods", func() bool {
			out, _ := w.Run("kubectl", "-n", ns, "get", "agent", k.name, "-o", "jsonpath={.status.readyReplicas}")
			return out == "2"
		})
	}
	t.Logf("Redis at %s; %d Agents with a %s Lease, 2 pods each", w.redis, len(agentKinds), *lease)
}

// conversation creates a conversation of Agent k for subject.
func (w *world) conversation(ctx context.Context, k agentKind, name, subject, input string) error {
	conv := &tetherv1alpha1.Conversation{}
	conv.Namespace, conv.Name = ns, name
	conv.Spec.AgentRef.Name = k.name
	conv.Spec.Subjects = []string{subject}
	if subject != auditor {
		conv.Spec.Subjects = append(conv.Spec.Subjects, auditor)
	}
	conv.Spec.InitialInput = input
	for {
		err := w.kube.Create(ctx, conv)
		switch {
		case err == nil || apierrors.IsAlreadyExists(err):
			return nil
		case apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err):
			return fmt.Errorf("creating %s: %w", name, err)
		}
		select { // the API server may be restarting
		case <-ctx.Done():
			return fmt.Errorf("creating %s: %w", name, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
