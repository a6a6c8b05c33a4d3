package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/controllers"
)

// node2 is the worker node node faults hit (hack/cluster/node2.sh); the
// first node holds the API server, the manager, the gateway, the Ingress
// and Redis.
const node2 = "tether-node2"

// fault is one injected fault.
type fault struct {
	kind, target string
	start, end   time.Time
	// lost are the pods that cannot serve during the fault: their
	// conversations must move to others.
	lost map[string]bool
	// prompted are the clients that held a prompt when the fault began,
	// with the prompt each held.
	prompted map[*transcript]int64
	err      error
}

// acting marks the moment the fault acts on its target: its figures count
// from there, not from the choice of the target (listing pods, finding a
// process), which under load can take as long as the failover measured.
func (f *fault) acting() { f.start = time.Now() }

// faultKind is a kind of fault and how to inject it.
type faultKind struct {
	name   string
	weight int
	// owners: the fault takes the owners of conversations away, so the
	// time until they are owned again is measured.
	owners bool
	inject func(ctx context.Context, w *world, f *fault) error
}

var faultKinds = []faultKind{
	{name: "pod-delete", weight: 3, owners: true, inject: func(ctx context.Context, w *world, f *fault) error {
		return w.deletePod(ctx, f, false)
	}},
	{name: "pod-force-delete", weight: 3, owners: true, inject: func(ctx context.Context, w *world, f *fault) error {
		return w.deletePod(ctx, f, true)
	}},
	{name: "pod-drain", weight: 2, owners: true, inject: func(ctx context.Context, w *world, f *fault) error {
		return w.drainPod(ctx, f)
	}},
	{name: "process-kill", weight: 3, inject: func(ctx context.Context, w *world, f *fault) error {
		pod, err := w.pickAgentPod(ctx, f)
		if err != nil {
			return err
		}
		delete(f.lost, pod.Name) // its container restarts: the same pod serves again
		pid, err := w.runtimePID(pod)
		if err != nil {
			return err
		}
		f.acting()
		return syscall.Kill(pid, syscall.SIGKILL)
	}},
	{name: "pod-freeze", weight: 3, owners: true, inject: func(ctx context.Context, w *world, f *fault) error {
		pod, err := w.pickAgentPod(ctx, f)
		if err != nil {
			return err
		}
		pid, err := w.runtimePID(pod)
		if err != nil {
			return err
		}
		f.acting()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(2 * *lease)
		return syscall.Kill(pid, syscall.SIGCONT)
	}},
	{name: "node-partition", weight: 2, owners: true, inject: func(ctx context.Context, w *world, f *fault) error {
		if err := w.loseNode(ctx, f); err != nil {
			return err
		}
		f.acting()
		if err := w.Script("partition", "node2"); err != nil {
			return err
		}
		time.Sleep(2**lease + 2*time.Second)
		return w.Script("heal", "node2")
	}},
	{name: "node-freeze", weight: 2, owners: true, inject: func(ctx context.Context, w *world, f *fault) error {
		if err := w.loseNode(ctx, f); err != nil {
			return err
		}
		f.acting()
		thaw, err := freezeNode2()
		if err != nil {
			return err
		}
		time.Sleep(2**lease + 2*time.Second)
		return thaw()
	}},
	{name: "gateway-delete", weight: 2, inject: func(ctx context.Context, w *world, f *fault) error {
		pod, err := w.pickPod(ctx, "tether-system", client.MatchingLabels{"app.kubernetes.io/name": "tether-gateway"}, "")
		if err != nil {
			return err
		}
		f.target = pod.Name
		f.acting()
		return w.kube.Delete(ctx, pod)
	}},
	{name: "manager-leader-kill", weight: 1, inject: func(ctx context.Context, w *world, f *fault) error {
		var l coordinationv1.Lease
		if err := w.kube.Get(ctx, client.ObjectKey{Namespace: "tether-system", Name: "tether-manager.tether.dev"}, &l); err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil {
			return errors.New("no manager leader")
		}
		pod, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
		f.target = pod
		w.killedLeader = *l.Spec.HolderIdentity
		return w.signalContainer(f, "tether-system", pod, syscall.SIGKILL)
	}},
	{name: "ingress-restart", weight: 2, inject: func(_ context.Context, w *world, f *fault) error {
		f.target = "nginx"
		return w.Script("ingress", "tether-system", "tether-gateway")
	}},
	{name: "apiserver-restart", weight: 1, inject: func(_ context.Context, w *world, f *fault) error {
		f.target = "kube-apiserver"
		return w.Script("restart", "kube-apiserver")
	}},
	{name: "redis-restart", weight: 2, inject: func(ctx context.Context, w *world, f *fault) error {
		pod, err := w.pickPod(ctx, ns, client.MatchingLabels{"app": "chaos-redis"}, "")
		if err != nil {
			return err
		}
		f.target = pod.Name
		if len(pod.Status.ContainerStatuses) == 0 {
			return fmt.Errorf("Redis pod %s has no container status", pod.Name)
		}
		w.killedRedis, w.killedRedisRestarts = pod.Name, pod.Status.ContainerStatuses[0].RestartCount
		return w.signalContainer(f, ns, pod.Name, syscall.SIGKILL)
	}},
	{name: "tcp-cut", weight: 3, inject: nil}, // cut by the run, which knows the clients
}

// chosenKinds are the kinds -chaos.kinds names (all by default).
func chosenKinds() ([]faultKind, error) {
	if *kinds == "" {
		return faultKinds, nil
	}
	var out []faultKind
	for _, name := range strings.Split(*kinds, ",") {
		i := slices.IndexFunc(faultKinds, func(k faultKind) bool { return k.name == name })
		if i < 0 {
			return nil, fmt.Errorf("no fault kind %q", name)
		}
		out = append(out, faultKinds[i])
	}
	return out, nil
}

// pick chooses a kind by weight.
func (w *world) pick(ks []faultKind) faultKind {
	total := 0
	for _, k := range ks {
		total += k.weight
	}
	n := w.rng.IntN(total)
	for _, k := range ks {
		if n < k.weight {
			return k
		}
		n -= k.weight
	}
	return ks[len(ks)-1]
}

var rngMu sync.Mutex

// chance is true with probability p.
func (w *world) chance(p float64) bool {
	rngMu.Lock()
	defer rngMu.Unlock()
	return w.rng.Float64() < p
}

// between is a random duration in [lo, hi).
func (w *world) between(lo, hi time.Duration) time.Duration {
	rngMu.Lock()
	defer rngMu.Unlock()
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)))
}

// agentSelector selects the chaos Agents' pods.
func agentSelector() client.ListOption {
	var names []string
	for _, k := range agentKinds {
		names = append(names, k.name)
	}
	sel, _ := labelsIn("tether.dev/agent", names)
	return client.MatchingLabelsSelector{Selector: sel}
}

// pickPod chooses a running, ready pod (on node, when set).
func (w *world) pickPod(ctx context.Context, namespace string, sel client.ListOption, node string) (*corev1.Pod, error) {
	var pods corev1.PodList
	if err := w.kube.List(ctx, &pods, client.InNamespace(namespace), sel); err != nil {
		return nil, err
	}
	var ready []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && isReady(&p) && (node == "" || p.Spec.NodeName == node) {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return nil, errors.New("no ready pod to hit")
	}
	rngMu.Lock()
	p := ready[w.rng.IntN(len(ready))]
	rngMu.Unlock()
	return &p, nil
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// pickAgentPod chooses an Agent's pod and counts it lost.
func (w *world) pickAgentPod(ctx context.Context, f *fault) (*corev1.Pod, error) {
	pod, err := w.pickPod(ctx, ns, agentSelector(), "")
	if err != nil {
		return nil, err
	}
	f.target = pod.Name
	f.lost[pod.Name] = true
	return pod, nil
}

func (w *world) deletePod(ctx context.Context, f *fault, force bool) error {
	pod, err := w.pickAgentPod(ctx, f)
	if err != nil {
		return err
	}
	var opts []client.DeleteOption
	if force {
		opts = append(opts, client.GracePeriodSeconds(0))
	}
	f.acting()
	return w.kube.Delete(ctx, pod, opts...)
}

// drainPod drains an Agent's pod as an operator would before taking it
// away (tether.dev/drain): its conversations move at turn boundaries while
// their clients talk; once none holds a slot on it, it is deleted (its
// Deployment makes another). A drain that does not empty the pod within
// drainBound is reported, and the pod deleted all the same.
func (w *world) drainPod(ctx context.Context, f *fault) error {
	pod, err := w.pickAgentPod(ctx, f)
	if err != nil {
		return err
	}
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"chaos"}}}`, tetherv1alpha1.DrainAnnotation)
	f.acting()
	if err := w.kube.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return err
	}
	held := func() int {
		var list tetherv1alpha1.ConversationList
		if err := w.kube.List(ctx, &list, client.InNamespace(ns), unfinished(fields.OneTermEqualSelector("status.owner.name", pod.Name))); err != nil {
			return -1
		}
		n := 0
		for _, c := range list.Items {
			if o := c.Status.Owner; o != nil && o.UID == string(pod.UID) && !isFinished(&c) {
				n++
			}
		}
		return n
	}
	emptied := waitEvery(ctx, drainBound, 100*time.Millisecond, func() bool { return held() == 0 })
	if err := w.kube.Delete(ctx, pod); err != nil {
		return err
	}
	if !emptied {
		return fmt.Errorf("%d conversations still on %s %s after it was drained; deleted all the same", held(), pod.Name, drainBound)
	}
	return nil
}

// drainBound is how long a drained pod may take to give its conversations
// up: every turn of the suite's agents ends (or waits on a human) within it.
const drainBound = 60 * time.Second

// loseNode counts every Agent pod of the second node lost.
func (w *world) loseNode(ctx context.Context, f *fault) error {
	var pods corev1.PodList
	if err := w.kube.List(ctx, &pods, client.InNamespace(ns), agentSelector()); err != nil {
		return err
	}
	f.target = node2
	for _, p := range pods.Items {
		if p.Spec.NodeName == node2 {
			f.lost[p.Name] = true
		}
	}
	return nil
}

// signalContainer signals the main process of a pod's first container: the
// fault acts then.
func (w *world) signalContainer(f *fault, namespace, pod string, sig syscall.Signal) error {
	pid, err := w.ContainerPID(namespace, pod, 0)
	if err != nil {
		return err
	}
	f.acting()
	return syscall.Kill(pid, sig)
}

// runtimePID is the host PID of an Agent pod's runtime: the pod's only
// container, or the one the manager added beside an agent of its own image.
func (w *world) runtimePID(pod *corev1.Pod) (int, error) {
	name := pod.Spec.Containers[0].Name
	for _, c := range pod.Spec.Containers {
		if c.Name == controllers.RuntimeContainer {
			name = c.Name
		}
	}
	return w.NamedContainerPID(pod.Namespace, pod.Name, name)
}

// freezeNode2 freezes the second node whole: its kubelet, containerd and
// kube-proxy stopped, every container of its pods frozen by the freezer
// cgroup. It returns the thaw.
func freezeNode2() (func() error, error) {
	pids := os.Getenv("TETHER_E2E_PIDS")
	var stopped []int
	for _, c := range []string{"kubelet2", "containerd2", "kube-proxy2"} {
		b, err := os.ReadFile(filepath.Join(pids, c+".pid")) //nolint:gosec // the cluster's pidfiles
		if err != nil {
			return nil, fmt.Errorf("the second node's %s: %w", c, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, err
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return nil, errors.Join(err, thaw(stopped))
		}
		stopped = append(stopped, pid)
	}
	if err := os.WriteFile(node2Freezer, []byte("FROZEN"), 0o600); err != nil {
		return nil, errors.Join(err, thaw(stopped))
	}
	return func() error { return thaw(stopped) }, nil
}

const node2Freezer = "/sys/fs/cgroup/freezer/tether-node2/freezer.state"

// thaw thaws the second node's pods and continues its stopped processes.
func thaw(stopped []int) error {
	var err error
	if _, statErr := os.Stat(node2Freezer); statErr == nil {
		err = os.WriteFile(node2Freezer, []byte("THAWED"), 0o600)
	}
	for _, pid := range stopped {
		err = errors.Join(err, syscall.Kill(pid, syscall.SIGCONT))
	}
	return err
}

// labelsIn selects objects whose label key has one of values.
func labelsIn(key string, values []string) (labels.Selector, error) {
	req, err := labels.NewRequirement(key, selection.In, values)
	if err != nil {
		return nil, err
	}
	return labels.NewSelector().Add(*req), nil
}
