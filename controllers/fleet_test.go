package controllers_test

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/controllers"
	"tether.dev/tether/gateway"
)

// scaleFleet is TestFleet's number of conversations in all; 0 skips it.
var scaleFleet = flag.Int("scale.fleet", 0, "conversations TestFleet creates in all, -scale.conversations of them live (0 skips it)")

// TestFleet is the scale benchmark of docs/benchmarks.md: a fleet the way
// an idle cluster looks (most conversations Suspended, -scale.conversations
// of them live on -scale.pods pods), on the envtest API server with the
// real controllers. It logs what it measured (figures, not assertions):
// creating the fleet, placing the live conversations, the heap the
// process holds per conversation (the manager's caches, since the test's
// own client caches nothing), API writes a second with nothing happening,
// how long a cold cache of the manager and a gateway's directory take to
// sync (what a new leader and a new gateway replica wait on before they
// serve), and moving the conversations of half the pods when those are
// deleted at once.
//
//	go test -count=1 -run TestFleet -v ./controllers/ -args \
//	    -scale.fleet 100000 -scale.conversations 10000 -scale.pods 20
func TestFleet(t *testing.T) {
	total, live, podCount := *scaleFleet, *scaleConversations, *scalePods
	if total == 0 {
		t.Skip("a benchmark: run with -scale.fleet N (docs/benchmarks.md)")
	}
	if live > total || podCount < 2 {
		t.Fatalf("-scale.conversations %d must not be above -scale.fleet %d, and -scale.pods at least 2", live, total)
	}
	ctx := context.Background()
	ns := newNamespace(t)
	heapBefore := heapAfterGC()

	// The idle ones: conversations of an Agent with no pod left, suspended
	// as the idle-suspend leaves them (set here, which costs one write
	// each instead of a placement and a suspension).
	newSelectorAgent(t, ns, "archive", 10)
	began := time.Now()
	forEach(t, total-live, func(i int) error {
		conv := newFleetConversation(ns, fmt.Sprintf("idle-%06d", i), "archive")
		if err := k8s.Create(ctx, conv); err != nil {
			return err
		}
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(conv), conv); err != nil {
				return err
			}
			conv.Status = tetherv1alpha1.ConversationStatus{Phase: tetherv1alpha1.PhaseSuspended}
			return k8s.Status().Update(ctx, conv)
		})
	})
	t.Logf("created and suspended %d conversations in %s (%.0f a second)", total-live, since(began), float64(total-live)/time.Since(began).Seconds())

	// The live ones, placed by the manager on pods with room for twice
	// their share.
	newSelectorAgent(t, ns, "fleet", int32(2*live/podCount)) //nolint:gosec // test sizes
	pods := make([]workerPod, podCount)
	for i := range pods {
		pods[i] = startPod(t, ns, "fleet", fmt.Sprintf("fleet-%d", i), fmt.Sprintf("127.0.9.%d", i+1), 3600)
	}
	began = time.Now()
	forEach(t, live, func(i int) error {
		return k8s.Create(ctx, newFleetConversation(ns, fmt.Sprintf("live-%06d", i), "fleet"))
	})
	eventuallyEvery(t, time.Second, time.Duration(live)*60*time.Millisecond+time.Minute, fmt.Sprintf("%d conversations placed", live), func() (bool, string) {
		placed := 0
		for _, n := range loadsByPod(t, ns) {
			placed += n
		}
		return placed == live, fmt.Sprintf("%d placed", placed)
	})
	t.Logf("created and placed %d live conversations on %d pods in %s (%.0f a second)", live, podCount, since(began), float64(live)/time.Since(began).Seconds())
	suspended := 0
	var list tetherv1alpha1.ConversationList
	if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Items {
		if c.Status.Phase == tetherv1alpha1.PhaseSuspended {
			suspended++
		}
	}
	if suspended != total-live {
		t.Errorf("%d conversations Suspended, want %d: the manager woke or moved idle ones", suspended, total-live)
	}

	heapFleet := heapAfterGC()
	t.Logf("heap in use: %s before, %s with the fleet cached: %.0f B a conversation (the manager's caches and indexes)",
		mib(heapBefore), mib(heapFleet), float64(heapFleet-heapBefore)/float64(total))

	// Nothing happening: what the manager writes is what it does per pod
	// or per Agent, never per conversation.
	idleFrom, idleWrites := time.Now(), writes.Load()
	time.Sleep(30 * time.Second)
	t.Logf("idle: %d API writes by the manager in %s (%.2f a second) with %d conversations on %d pods",
		writes.Load()-idleWrites, since(idleFrom), float64(writes.Load()-idleWrites)/time.Since(idleFrom).Seconds(), total, podCount)

	coldCache(t, ns)
	coldDirectory(t, ns)

	// Half the pods deleted at once (a node's worth): each of their
	// conversations moves to the other half.
	held := 0
	loads := loadsByPod(t, ns)
	victims := map[string]bool{}
	for _, p := range pods[:podCount/2] {
		victims[p.pod.Name] = true
		held += loads[p.pod.Name]
	}
	writesBefore, byKindBefore := writes.Load(), writesByKind()
	deleted := time.Now()
	for _, p := range pods[:podCount/2] {
		if err := k8s.Delete(ctx, p.pod, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
	}
	var last time.Time
	eventuallyEvery(t, time.Second, 5*time.Minute, "every conversation of the deleted pods moved", func() (bool, string) {
		var list tetherv1alpha1.ConversationList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		moved, stuck := 0, 0
		for _, c := range list.Items {
			switch {
			case c.Spec.AgentRef.Name != "fleet":
			case c.Status.Owner == nil || victims[c.Status.Owner.Name]:
				stuck++
			case c.Status.RescheduleCount > 0:
				moved++
				if at := c.Status.Lease.AcquireTime.Time; at.After(last) {
					last = at
				}
			}
		}
		return stuck == 0 && moved == held, fmt.Sprintf("%d moved, %d not yet, of %d", moved, stuck, held)
	})
	time.Sleep(time.Second) // trailing writes (Agent status, events)
	moveWrites := writes.Load() - writesBefore
	t.Logf("%d pods deleted holding %d conversations: all moved %s after (%.2f ms a move, %.0f a second); %d API writes by the manager (%.2f a move, events and Agent status included)",
		podCount/2, held, last.Sub(deleted).Round(time.Millisecond), float64(last.Sub(deleted).Microseconds())/1000/float64(held),
		float64(held)/last.Sub(deleted).Seconds(), moveWrites, float64(moveWrites)/float64(held))
	var kinds []string
	for kind, n := range writesByKind() {
		if d := n - byKindBefore[kind]; d > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", kind, d))
		}
	}
	slices.Sort(kinds)
	t.Logf("the moves' writes by kind: %s", strings.Join(kinds, ", "))
}

// writesByKind is the manager's writes so far by what they wrote: the
// resource, and its subresource.
func writesByKind() map[string]int64 {
	out := map[string]int64{}
	writesTo.Range(func(path, n any) bool {
		parts := strings.Split(strings.Trim(path.(string), "/"), "/")
		kind := "other"
		for i, p := range parts {
			if p == "namespaces" && i+2 < len(parts) {
				kind = strings.Join(parts[i+2:], "/")
				if len(parts) > i+3 {
					kind = parts[i+2]
					if len(parts) > i+4 {
						kind += "/" + parts[i+4]
					}
				}
				break
			}
		}
		out[kind] += n.(*atomic.Int64).Load()
		return true
	})
	return out
}

// coldCache times a cache built as the manager builds its own, from cold,
// until its Conversation informer has synced: what a new leader waits on
// before its controllers start.
func coldCache(t *testing.T, ns string) {
	t.Helper()
	opts := controllers.CacheOptions()
	opts.Scheme = env.Scheme
	opts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	before := heapAfterGC()
	began := time.Now()
	c, err := cache.New(env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := c.GetInformer(ctx, &tetherv1alpha1.Conversation{}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("a cold manager cache did not sync")
	}
	took := time.Since(began)
	t.Logf("a cold manager cache of the namespace's Conversations synced in %s, holding %s more heap",
		took.Round(time.Millisecond), mib(heapAfterGC()-before))
}

// coldDirectory times a gateway's directory (its trimmed caches of
// Conversations and worker pods) from cold until it has synced: what a new
// gateway replica waits on before it routes.
func coldDirectory(t *testing.T, ns string) {
	t.Helper()
	before := heapAfterGC()
	began := time.Now()
	d, err := gateway.NewDirectory(env.Config, gateway.DirectoryOptions{Namespaces: []string{ns}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	t.Logf("a cold gateway directory synced in %s, holding %s more heap (%.0f B a conversation)",
		took.Round(time.Millisecond), mib(heapAfterGC()-before), float64(heapAfterGC()-before)/float64(*scaleFleet))
}

func newFleetConversation(ns, name, agent string) *tetherv1alpha1.Conversation {
	conv := &tetherv1alpha1.Conversation{}
	conv.Namespace, conv.Name = ns, name
	conv.Spec = tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: agent}, Subjects: []string{"alice"}}
	return conv
}

// forEach runs fn for 0..n-1 on 32 goroutines and fails the test on the
// first error.
func forEach(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	const workers = 32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// heapAfterGC is the heap in use once garbage is collected.
func heapAfterGC() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse) //nolint:gosec // far below 2^63
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }
