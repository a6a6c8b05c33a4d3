package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testenv"
	"tether.dev/tether/internal/testing/testworker"
)

// One control plane and one manager running the real controllers serve every
// test of this package; each test works in a namespace of its own. There is
// no kubelet: pods are objects whose status the tests set, with IPs from
// 127.0.0.0/8, and the tests renew (or stop renewing) the pods' Leases the
// way a runtime would.
var (
	env *testenv.Env
	// k8s reads straight from the API server, never from a cache.
	k8s client.Client
	// writes counts the manager's requests that change something;
	// writesTo counts them by URL path (path → *atomic.Int64).
	writes   atomic.Int64
	writesTo sync.Map
)

// writesToPath is how many requests that change something the manager has
// sent to path.
func writesToPath(path string) int64 {
	if n, ok := writesTo.Load(path); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

func TestMain(m *testing.M) {
	// Errors only: the controllers log every routine step at info.
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	testenv.Main(m, &env, func(e *testenv.Env) (func() error, error) {
		k8s = e.Client
		return startManager(e)
	})
}

// startManager runs the real controllers, as the manager binary sets them
// up, counting the requests they make that change something.
func startManager(e *testenv.Env) (func() error, error) {
	cfg := rest.CopyConfig(e.Config)
	cfg.QPS, cfg.Burst = 200, 400 // the manager binary's defaults
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			switch req.Method {
			case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
				writes.Add(1)
				n, _ := writesTo.LoadOrStore(req.URL.Path, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
			return rt.RoundTrip(req)
		})
	})
	return testworker.StartControllers(cfg, e.Scheme, 16)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

var namespaceSeq atomic.Int32

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ctrl-test-%d", namespaceSeq.Add(1))}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// newSelectorAgent creates an Agent whose pods the test runs (as a user with
// a selector would), with the given capacity per pod.
func newSelectorAgent(t *testing.T, ns, name string, perPod int32, mutate ...func(*tetherv1alpha1.Agent)) *tetherv1alpha1.Agent {
	t.Helper()
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: tetherv1alpha1.AgentSpec{
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: name}},
			ConversationsPerPod: perPod,
		},
	}
	for _, m := range mutate {
		m(agent)
	}
	if err := k8s.Create(context.Background(), agent); err != nil {
		t.Fatal(err)
	}
	return agent
}

// workerPod is a pod of an Agent with the Lease its runtime would hold.
type workerPod struct {
	pod   *corev1.Pod
	lease *coordinationv1.Lease
}

// startPod creates a running, ready pod with IP ip and a Lease renewed now for
// leaseSeconds.
func startPod(t *testing.T, ns, agent, name, ip string, leaseSeconds int32) workerPod {
	t.Helper()
	w := createPod(t, ns, agent, name, ip)
	setPodReady(t, w.pod, true)
	w.lease = createLease(t, w.pod, leaseSeconds)
	return w
}

// createPod creates a pod object (not yet running, no Lease).
func createPod(t *testing.T, ns, agent, name, ip string) workerPod {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{tetherv1alpha1.AgentLabel: agent}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime:test"}}},
	}
	if err := k8s.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	// The manager may write the pod meanwhile (its deletion cost).
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
		return k8s.Status().Update(ctx, pod)
	}); err != nil {
		t.Fatal(err)
	}
	return workerPod{pod: pod}
}

func setPodReady(t *testing.T, pod *corev1.Pod, ready bool) {
	t.Helper()
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.Now()}}
		return k8s.Status().Update(context.Background(), pod)
	}); err != nil {
		t.Fatal(err)
	}
}

func createLease(t *testing.T, pod *corev1.Pod, seconds int32) *coordinationv1.Lease {
	t.Helper()
	now := metav1.NewMicroTime(time.Now())
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, Labels: map[string]string{tetherv1alpha1.AgentLabel: pod.Labels[tetherv1alpha1.AgentLabel]}},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To(string(pod.UID)), LeaseDurationSeconds: ptr.To(seconds), AcquireTime: &now, RenewTime: &now,
		},
	}
	if err := k8s.Create(context.Background(), lease); err != nil {
		t.Fatal(err)
	}
	return lease
}

func newConversation(t *testing.T, ns, name, agent string, mutate ...func(*tetherv1alpha1.Conversation)) *tetherv1alpha1.Conversation {
	t.Helper()
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: agent}, Subjects: []string{"alice"}},
	}
	for _, m := range mutate {
		m(conv)
	}
	if err := k8s.Create(context.Background(), conv); err != nil {
		t.Fatal(err)
	}
	return conv
}

func getConversation(t *testing.T, conv *tetherv1alpha1.Conversation) *tetherv1alpha1.Conversation {
	t.Helper()
	out := &tetherv1alpha1.Conversation{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(conv), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually polls cond until it holds or timeout passes; cond returns a
// description of what it saw, for the failure message.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	eventuallyEvery(t, 20*time.Millisecond, timeout, what, cond)
}

// eventuallyEvery is eventually with a polling interval, for conditions that
// are expensive to check.
func eventuallyEvery(t *testing.T, interval, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	await.UntilSeen(t, timeout, interval, what, cond)
}

// waitOwned waits until conv has an owner and returns it.
func waitOwned(t *testing.T, conv *tetherv1alpha1.Conversation) *tetherv1alpha1.Conversation {
	t.Helper()
	var got *tetherv1alpha1.Conversation
	eventually(t, 10*time.Second, conv.Name+" to be placed", func() (bool, string) {
		got = getConversation(t, conv)
		return got.Status.Owner != nil, fmt.Sprintf("%+v", got.Status)
	})
	return got
}

func epochOf(conv *tetherv1alpha1.Conversation) int64 {
	if conv.Status.Lease == nil {
		return 0
	}
	return conv.Status.Lease.Epoch
}
