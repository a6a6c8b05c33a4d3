package controllers_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/controllers"
	"tether.dev/tether/internal/testing/await"
)

// scalingWorld plays, for an autoscaled Agent, the parts envtest does not
// run: the ReplicaSet (pods made up to the Deployment's replicas, and
// removed above it cheapest deletion cost first, as the ReplicaSet does) and
// the runtimes (a conversation whose owner drains is parked, unless a turn
// of it is running). It records what must never happen: a pod removed
// while it held conversations, a conversation moved that was not parked.
type scalingWorld struct {
	t         *testing.T
	ns, agent string

	mu       sync.Mutex
	made     int
	busy     map[string]bool   // conversations with a turn running: not parked
	owners   map[string]string // each conversation's owner as last seen
	parkedOn map[string]string // the owner each conversation was parked on
	removed  []string          // pods removed
	wrong    []string          // what must never happen
	moves    int
}

func (w *scalingWorld) step(ctx context.Context) {
	var d appsv1.Deployment
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: w.ns, Name: w.agent}, &d); err != nil || d.Spec.Replicas == nil {
		return
	}
	var pods corev1.PodList
	if err := k8s.List(ctx, &pods, client.InNamespace(w.ns), client.MatchingLabels{tetherv1alpha1.AgentLabel: w.agent}); err != nil {
		return
	}
	var convs tetherv1alpha1.ConversationList
	if err := k8s.List(ctx, &convs, client.InNamespace(w.ns)); err != nil {
		return
	}
	loads := map[string]int{}
	w.mu.Lock()
	for _, c := range convs.Items {
		owner := ""
		if c.Status.Owner != nil {
			owner = c.Status.Owner.Name
			loads[owner]++
		}
		if before := w.owners[c.Name]; before != "" && owner != before {
			w.moves++
			if w.parkedOn[c.Name] != before {
				w.wrong = append(w.wrong, fmt.Sprintf("%s moved off %s without being parked", c.Name, before))
			}
		}
		w.owners[c.Name] = owner
	}
	w.mu.Unlock()

	// The runtimes: park what drains, unless a turn of it runs.
	for i := range convs.Items {
		c := &convs.Items[i]
		w.mu.Lock()
		busy := w.busy[c.Name]
		w.mu.Unlock()
		if c.Status.Owner == nil || !c.Status.Owner.Draining || c.Status.Parked || busy {
			continue
		}
		c.Status.Parked = true
		if err := k8s.Status().Update(ctx, c); err == nil {
			w.mu.Lock()
			w.parkedOn[c.Name] = c.Status.Owner.Name
			w.mu.Unlock()
		}
	}

	// The ReplicaSet.
	want := int(*d.Spec.Replicas)
	switch {
	case len(pods.Items) < want:
		w.mu.Lock()
		w.made++
		name := fmt.Sprintf("%s-%d", w.agent, w.made)
		ip := fmt.Sprintf("127.0.%d.%d", 20+w.made/250, 1+w.made%250)
		w.mu.Unlock()
		startPod(w.t, w.ns, w.agent, name, ip, 3600)
	case len(pods.Items) > want:
		cheapest := pods.Items[0]
		for _, p := range pods.Items[1:] {
			if cost(&p) < cost(&cheapest) {
				cheapest = p
			}
		}
		w.mu.Lock()
		w.removed = append(w.removed, cheapest.Name)
		if n := loads[cheapest.Name]; n > 0 {
			w.wrong = append(w.wrong, fmt.Sprintf("pod %s removed holding %d conversations", cheapest.Name, n))
		}
		w.mu.Unlock()
		if err := k8s.Delete(ctx, &cheapest); err != nil && !apierrors.IsNotFound(err) {
			w.t.Error(err)
		}
	}
}

func cost(p *corev1.Pod) int {
	n, _ := strconv.Atoi(p.Annotations[controllers.DeletionCostAnnotation])
	return n
}

func (w *scalingWorld) movesSoFar() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.moves
}

func (w *scalingWorld) setBusy(name string, busy bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.busy[name] = busy
}

// TestAgentFollowsItsLoad: an Agent keeping 20 free slots (10 a pod) while
// 200 conversations arrive and then most leave: its replicas follow, the
// pods removed are only empty ones, and a pod that still holds
// conversations is drained first, each conversation moved only once
// parked: while their turns run, none moves.
func TestAgentFollowsItsLoad(t *testing.T) {
	ns := newNamespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fleet"},
		Spec: tetherv1alpha1.AgentSpec{
			ConversationsPerPod: 10, LeaseDurationSeconds: 7, RuntimePort: 8080,
			Autoscaling: &tetherv1alpha1.AgentAutoscaling{MinReplicas: 1, MaxReplicas: 40, FreeSlots: intstr.FromInt32(20)},
			Template:    &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime:test"}}}},
		},
	}
	if err := k8s.Create(ctx, agent); err != nil {
		t.Fatal(err)
	}
	w := &scalingWorld{t: t, ns: ns, agent: "fleet", busy: map[string]bool{}, owners: map[string]string{}, parkedOn: map[string]string{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			w.step(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer func() { cancel(); <-done }()
	t.Cleanup(func() { // also after a wait that failed
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, wrong := range w.wrong {
			t.Error(wrong)
		}
	})

	replicasAndLoad := func() (int32, map[string]int) {
		var d appsv1.Deployment
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fleet"}, &d); err != nil || d.Spec.Replicas == nil {
			return 0, nil
		}
		return *d.Spec.Replicas, loadsByPod(t, ns)
	}
	settled := func(what string, conversations int, replicas int32) {
		t.Helper()
		eventuallyEvery(t, 100*time.Millisecond, 90*time.Second, what, func() (bool, string) {
			r, loads := replicasAndLoad()
			held := 0
			for _, n := range loads {
				held += n
			}
			var pods corev1.PodList
			if err := k8s.List(ctx, &pods, client.InNamespace(ns)); err != nil {
				return false, err.Error()
			}
			return r == replicas && held == conversations && len(pods.Items) == int(replicas),
				fmt.Sprintf("replicas %d, %d pods, %d conversations placed", r, len(pods.Items), held)
		})
	}

	// 200 arrive, in bursts: the buffer is kept throughout.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		newConversation(t, ns, fmt.Sprintf("c-%03d", i), "fleet")
		if i%50 == 49 {
			settled(fmt.Sprintf("%d conversations placed, 20 slots free", i+1), i+1, int32((i+1+20+9)/10))
		}
	}
	// 180 leave at random, spread over every pod: 20 stay, on many pods.
	// Those that stay all run a turn meanwhile: none can park, so the first
	// drain waits on them, and nothing moves until the turns end.
	order := rng.Perm(200)
	var stay []string
	for _, i := range order[:20] {
		name := fmt.Sprintf("c-%03d", i)
		stay = append(stay, name)
		w.setBusy(name, true)
	}
	for _, i := range order[20:] {
		conv := &tetherv1alpha1.Conversation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("c-%03d", i)}}
		if err := k8s.Delete(ctx, conv); err != nil {
			t.Fatal(err)
		}
	}
	draining := func() (string, bool) {
		for _, name := range stay {
			c := &tetherv1alpha1.Conversation{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, c); err == nil && c.Status.Owner != nil && c.Status.Owner.Draining {
				return name + " on " + c.Status.Owner.Name, true
			}
		}
		return "", false
	}
	eventuallyEvery(t, 100*time.Millisecond, 90*time.Second, "a drain waiting on running turns", func() (bool, string) {
		what, ok := draining()
		r, _ := replicasAndLoad()
		return ok, fmt.Sprintf("%s; replicas %d", what, r)
	})
	before := w.movesSoFar()
	await.Stays(t, time.Second, "no conversation moved while its turn runs", func() bool { return w.movesSoFar() == before })
	for _, name := range stay {
		w.setBusy(name, false)
	}
	// 20 held + 20 free is 4 pods.
	settled("down to 4 pods holding the 20", 20, 4)

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.moves == 0 {
		t.Error("no conversation moved: nothing was drained")
	}
	t.Logf("%d pods made, %d removed, %d conversations moved at turn boundaries", w.made, len(w.removed), w.moves)
}
