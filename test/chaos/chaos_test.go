package chaos

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// TestChaos: clients talk to Agents of every kind on both stores while
// faults of every kind are injected at random; then the audit. The run
// fails on any violation: an acknowledged message lost, a message or answer
// applied twice, an answer applied to another question, an event a client
// saw twice, out of order or unlike the log's, a history with a gap, or a
// write the API server or a store accepted from a stale owner.
func TestChaos(t *testing.T) {
	w := newWorld(t)
	ks, err := chosenKinds()
	if err != nil {
		t.Fatal(err)
	}
	w.setUp(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	var mu sync.Mutex
	var trs []*transcript
	add := func(tr *transcript) {
		mu.Lock()
		trs = append(trs, tr)
		mu.Unlock()
	}
	all := func() []*transcript {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(trs)
	}
	talking, stopTalking := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var conns []*connSet
	for _, k := range agentKinds {
		for i := range *perAgent {
			cs := &connSet{}
			conns = append(conns, cs)
			subject := fmt.Sprintf("%s-%d-%d", k.name, w.start.Unix()%100000, i)
			token, err := w.Token(subject)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			if k.agent == "approval" {
				go func() { defer wg.Done(); w.runApprovals(talking, k, subject, token, cs, add) }()
				continue
			}
			tr := newTranscript(subject, subject, token, k)
			if err := w.conversation(ctx, k, tr.name, subject, ""); err != nil {
				t.Fatal(err)
			}
			add(tr)
			if k.agent == "python" {
				go func() { defer wg.Done(); w.runRefunds(talking, tr, cs) }()
				continue
			}
			go func() { defer wg.Done(); w.chatEcho(talking, tr, cs) }()
		}
	}
	// Faults start once every echo client has had a message acknowledged.
	started := time.Now()
	waitFor(ctx, 120*time.Second, func() bool {
		for _, tr := range all() {
			tr.mu.Lock()
			n := len(tr.acked)
			tr.mu.Unlock()
			if tr.kind.agent == "echo" && n == 0 {
				return false
			}
		}
		return true
	})

	t.Logf("every echo client acknowledged after %s", time.Since(started).Round(100*time.Millisecond))
	for _, tr := range all() {
		tr.mu.Lock()
		if tr.kind.agent == "echo" && len(tr.acked) == 0 {
			t.Logf("%s: nothing acknowledged yet (%d sent)", tr.name, len(tr.sent))
		}
		tr.mu.Unlock()
	}
	faults := w.injectFaults(ctx, t, ks, conns, all)
	stopTalking()
	wg.Wait()
	if len(faults) == 0 {
		t.Fatal("no fault was injected")
	}
	lastFault := faults[len(faults)-1].end
	settled, settleErr := w.settle(ctx, all())
	a, err := w.audit(ctx, all())
	if err != nil {
		t.Fatal(err)
	}
	owners := a.owners
	text := w.report(faults, a, owners, settled.Sub(lastFault))
	if size, inUse, err := etcdFileSize(ctx); err == nil {
		text += fmt.Sprintf("The cluster's etcd at the end: a %d MiB file, %d MiB of it in use (hack/cluster/etcd-keeper.sh defragments it).\n", size>>20, inUse>>20)
	}
	if n := countStuck(all()); n > 0 {
		text += fmt.Sprintf("Clients that could not finish: %d (the test's errors say what kept each).\n", n)
	}
	text += a.details()
	if stuck := stuckLines(all(), 10); stuck != "" {
		text += "\nClients that could not finish, and why:\n\n" + stuck
	}
	t.Log("\n" + text)
	t.Log("\n" + w.slowest(faults, owners))
	if *report != "" {
		f, err := os.OpenFile(*report, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600) //nolint:gosec // the run's report
		if err == nil {
			_, _ = f.WriteString(text + "\n")
			_ = f.Close()
		}
	}
	// What kept a client from finishing comes last, where a truncated log
	// still shows it, with its conversation's latest states.
	for _, tr := range all() {
		if tr.stuck != "" {
			t.Errorf("%s: %s; its last states:%s", tr.name, tr.stuck, owners.last(tr.name, 6, w.start))
		}
	}
	if settleErr != nil {
		t.Error(settleErr)
	}
	for what, list := range a.violations {
		t.Errorf("%s: %d, e.g. %s", what, len(list), strings.Join(list[:min(3, len(list))], "; "))
	}
	for _, f := range a.stale {
		t.Errorf("stale write accepted: %s", f)
	}
	for _, f := range a.inferred {
		t.Logf("grant inferred: %s", f)
	}
	for _, f := range a.orphans {
		t.Logf("orphan chunk: %s", f)
	}
}

// stuckLines lists up to max clients that could not finish, with why, for
// the report (the log says more, but may not outlive the run).
func stuckLines(trs []*transcript, limit int) string {
	var b strings.Builder
	n := 0
	for _, tr := range trs {
		if tr.stuck != "" && n < limit {
			fmt.Fprintf(&b, "- %s: %s\n", tr.name, tr.stuck)
			n++
		}
	}
	return b.String()
}

// countStuck counts the clients that could not finish.
func countStuck(trs []*transcript) int {
	n := 0
	for _, tr := range trs {
		if tr.stuck != "" {
			n++
		}
	}
	return n
}

// injectFaults injects faults one after another until the duration is over
// (or -chaos.faults took effect, or -chaos.stop exists): first one of each kind, in a random
// order, then kinds at random by weight. Every fault is logged with its
// time and kind.
func (w *world) injectFaults(ctx context.Context, t *testing.T, ks []faultKind, conns []*connSet, all func() []*transcript) []*fault {
	t.Helper()
	order := slices.Clone(ks)
	w.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	deadline := time.Now().Add(*duration)
	var faults []*fault
	// -chaos.faults counts faults that took effect; one that could not be
	// injected (its target not back yet) is logged and not counted.
	for i, took := 0, 0; time.Now().Before(deadline) && (*maxFaults == 0 || took < *maxFaults); i++ {
		if stopRequested() {
			t.Logf("%s exists: no more faults after %d (%d took effect)", *stopFile, i, took)
			break
		}
		k := w.pick(ks)
		if i < len(order) {
			k = order[i]
		}
		f := &fault{kind: k.name, lost: map[string]bool{}, start: time.Now()}
		holding := map[*transcript]int64{}
		for _, tr := range all() {
			if seq := tr.heldPrompt(); seq != 0 {
				holding[tr] = seq
			}
		}
		if k.inject == nil { // tcp-cut
			cs := conns[w.rng.IntN(len(conns))]
			f.target = "a client"
			if !cs.cut() {
				f.err = fmt.Errorf("no connection to cut")
			}
		} else {
			f.err = k.inject(ctx, w, f)
		}
		f.end = time.Now()
		f.prompted = holding
		faults = append(faults, f)
		status := "ok"
		if f.err != nil {
			status = "failed: " + f.err.Error()
		} else {
			took++
		}
		t.Logf("%8s fault %3d %-20s %-40s %6s %s", time.Since(w.start).Round(100*time.Millisecond), i+1, f.kind, f.target,
			f.end.Sub(f.start).Round(100*time.Millisecond), status)
		// The next fault comes once this one has healed (or -chaos.settle
		// has passed), after a random pause (0.2-1 s: a fault on a cluster
		// that has only just healed is no gentler, and a long run's
		// pauses add up: 1,000 of 1.25 s on average were 21 minutes).
		if !waitEvery(ctx, *settleCap, 200*time.Millisecond, func() bool { return w.healed(ctx, all()) }) {
			if alarms, err := etcdAlarms(ctx); err == nil && len(alarms) > 0 {
				t.Errorf("after fault %d the cluster's etcd has raised %v and refuses writes: no more faults", i+1, alarms)
				break
			}
		}
		time.Sleep(w.between(200*time.Millisecond, time.Second))
	}
	return faults
}

// stopRequested reports whether -chaos.stop names a file that exists.
func stopRequested() bool {
	if *stopFile == "" {
		return false
	}
	_, err := os.Stat(*stopFile)
	return err == nil
}

// settle waits, after the faults, until every conversation still going is
// owned by a ready pod, and returns when that was.
func (w *world) settle(ctx context.Context, trs []*transcript) (time.Time, error) {
	if !waitEvery(ctx, 180*time.Second, 100*time.Millisecond, func() bool { return w.allOwned(ctx, trs) }) {
		return time.Now(), fmt.Errorf("conversations not all owned by ready pods 180s after the faults")
	}
	return time.Now(), nil
}

// allOwned reports whether every conversation of trs still going is owned
// by a ready pod that has claimed it.
func (w *world) allOwned(ctx context.Context, trs []*transcript) bool {
	names := map[string]bool{}
	for _, tr := range trs {
		names[tr.name] = true
	}
	var list tetherv1alpha1.ConversationList
	if w.kube.List(ctx, &list, client.InNamespace(ns), unfinished()) != nil {
		return false
	}
	ready, err := w.readyPods(ctx)
	if err != nil {
		return false
	}
	for _, c := range list.Items {
		switch {
		case !names[c.Name], isFinished(&c), c.Status.Phase == tetherv1alpha1.PhaseSuspended:
		case c.Status.Owner == nil || !ready[c.Status.Owner.Name] || !claimed(c.Status.Phase):
			return false
		}
	}
	return true
}

// unfinished selects the conversations not Succeeded or Failed, on the
// API server's side (a selectable field): the suite asks after each fault,
// five times a second, and a long run keeps thousands of finished
// conversations for the audit, whose listing grew to be most of the API
// server's work and slowed the run as it went.
// More terms (and) may be given.
func unfinished(and ...fields.Selector) client.ListOption {
	return client.MatchingFieldsSelector{Selector: fields.AndSelectors(append([]fields.Selector{
		fields.OneTermNotEqualSelector("status.phase", string(tetherv1alpha1.PhaseSucceeded)),
		fields.OneTermNotEqualSelector("status.phase", string(tetherv1alpha1.PhaseFailed)),
	}, and...)...)}
}

// healed reports whether every conversation of trs still going is owned by
// a ready pod that has claimed it, and every Agent has all its pods ready:
// each fault starts from a whole cluster, so its figures measure that fault
// alone (a spare pod to move to, as an Agent's buffer would keep).
func (w *world) healed(ctx context.Context, trs []*transcript) bool {
	var agents tetherv1alpha1.AgentList
	if err := w.kube.List(ctx, &agents, client.InNamespace(ns)); err != nil {
		return false
	}
	var pods corev1.PodList
	if err := w.kube.List(ctx, &pods, client.InNamespace(ns), agentSelector()); err != nil {
		return false
	}
	perAgent := map[string]int32{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && isReady(&p) {
			perAgent[p.Labels["tether.dev/agent"]]++
		}
	}
	ours := map[string]bool{}
	for _, k := range agentKinds {
		ours[k.name] = true
	}
	for _, a := range agents.Items {
		// The suite's own Agents only: others may share the namespace
		// (CI runs it on the cluster make e2e left with its Agents).
		if ours[a.Name] && a.Spec.Replicas != nil && perAgent[a.Name] < *a.Spec.Replicas {
			return false
		}
	}
	return w.controlPlaneUp(ctx) && w.allOwned(ctx, trs)
}

// controlPlaneUp reports whether Tether's own parts are whole: the gateway's
// and the manager's pods and Redis all ready, and a manager leader that
// renewed its Lease within the last leaderFresh (a killed leader's Lease
// goes on naming it until it expires, 15 s later).
func (w *world) controlPlaneUp(ctx context.Context) bool {
	for _, d := range []client.ObjectKey{
		{Namespace: "tether-system", Name: "tether-gateway"}, {Namespace: "tether-system", Name: "tether-manager"}, {Namespace: ns, Name: "chaos-redis"},
	} {
		var dep appsv1.Deployment
		if err := w.kube.Get(ctx, d, &dep); err != nil || dep.Spec.Replicas == nil || dep.Status.ReadyReplicas < *dep.Spec.Replicas {
			return false
		}
	}
	if !w.redisBack(ctx) {
		return false
	}
	var l coordinationv1.Lease
	if err := w.kube.Get(ctx, client.ObjectKey{Namespace: "tether-system", Name: "tether-manager.tether.dev"}, &l); err != nil {
		return false
	}
	if l.Spec.RenewTime == nil || time.Since(l.Spec.RenewTime.Time) > leaderFresh ||
		l.Spec.AcquireTime == nil || time.Since(l.Spec.AcquireTime.Time) < leaderSettled || l.Spec.HolderIdentity == nil ||
		*l.Spec.HolderIdentity == w.killedLeader {
		return false
	}
	// A killed leader's Lease goes on naming it, freshly renewed, for a
	// moment (and its pod's status says running until the kubelet notices,
	// which let a fault start 2 s after the kill): the leader must not be
	// the one killed, and must be a process that started before it took the
	// Lease, not one whose container has restarted since.
	holder, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	var pod corev1.Pod
	if err := w.kube.Get(ctx, client.ObjectKey{Namespace: "tether-system", Name: holder}, &pod); err != nil {
		return false
	}
	for _, c := range pod.Status.ContainerStatuses {
		if c.State.Running == nil || c.State.Running.StartedAt.After(l.Spec.AcquireTime.Time) {
			return false
		}
	}
	return true
}

// redisBack reports whether the Redis pod a fault killed last has restarted
// and is ready, or is gone (its Deployment's replacement is then checked as
// any pod is). Its status goes on saying ready until the kubelet notices the
// kill: the next fault came a second after a Redis restart, and the owners
// it took away had to wait for Redis to be back, seconds later (runs of
// 2026-12-08).
func (w *world) redisBack(ctx context.Context) bool {
	if w.killedRedis == "" {
		return true
	}
	var pod corev1.Pod
	err := w.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: w.killedRedis}, &pod)
	if apierrors.IsNotFound(err) {
		return true
	}
	if err != nil || len(pod.Status.ContainerStatuses) == 0 {
		return false
	}
	c := pod.Status.ContainerStatuses[0]
	return c.RestartCount > w.killedRedisRestarts && c.Ready
}

const (
	// leaderFresh is how recently the manager's leader must have renewed
	// its Lease to count as there (it renews every second).
	leaderFresh = 5 * time.Second
	// leaderSettled is how long a new leader must have led: on taking over
	// it reconciles every conversation once, and a node lost in that time
	// waited for that backlog (a move 4 s after the Lease expired, 3 s
	// after a leader was killed), measuring the takeover as well.
	leaderSettled = 10 * time.Second
)

// readyPods are the Agents' ready pods.
func (w *world) readyPods(ctx context.Context) (map[string]bool, error) {
	var pods corev1.PodList
	if err := w.kube.List(ctx, &pods, client.InNamespace(ns), agentSelector()); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && isReady(&p) {
			out[p.Name] = true
		}
	}
	return out, nil
}
