package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/runtime"
)

// partitionableClient reaches the API server until cut is set, then fails
// every request as a network partition would.
func partitionableClient(t *testing.T, cut *atomic.Bool) client.Client {
	t.Helper()
	return clientThrough(t, func(*http.Request) error {
		if cut.Load() {
			return errors.New("partitioned from the API server")
		}
		return nil
	})
}

// clientThrough is a client whose every request passes through seen first;
// an error from it fails the request.
func clientThrough(t *testing.T, seen func(*http.Request) error) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if err := seen(req); err != nil {
				return nil, err
			}
			return rt.RoundTrip(req)
		})
	})
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

var nsSeq atomic.Int32

// newPod creates a namespace and a pod object for a runtime to run in.
func newPod(t *testing.T, agent string) runtime.Pod {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("runtime-test-%d", nsSeq.Add(1))}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: agent + "-0", Labels: map[string]string{tetherv1alpha1.AgentLabel: agent}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime:test"}}},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return runtime.Pod{Namespace: ns.Name, Name: pod.Name, UID: pod.UID, IP: "127.0.0.1", Agent: agent}
}

func getLease(t *testing.T, pod runtime.Pod) (*coordinationv1.Lease, error) {
	t.Helper()
	lease := &coordinationv1.Lease{}
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: pod.Namespace, Name: pod.Name}, lease)
	return lease, err
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	await.Until(t, timeout, what, cond)
}

func TestLeaseKeeperHoldsRenewsAndReleases(t *testing.T) {
	pod := newPod(t, "keeper")
	keeper := runtime.NewLeaseKeeper(env.Client, pod, 3*time.Second, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- keeper.Run(ctx) }()

	waitFor(t, 5*time.Second, "the Lease held", keeper.Held)
	first, err := getLease(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	if *first.Spec.HolderIdentity != string(pod.UID) || *first.Spec.LeaseDurationSeconds != 3 || first.Labels[tetherv1alpha1.AgentLabel] != "keeper" {
		t.Fatalf("Lease %+v %v", first.Spec, first.Labels)
	}
	if len(first.OwnerReferences) != 1 || first.OwnerReferences[0].UID != pod.UID {
		t.Errorf("the Lease is not owned by its pod: %+v", first.OwnerReferences)
	}
	// Renewed every second (a third of its duration), and held throughout.
	await.Stays(t, 2500*time.Millisecond, "a renewing runtime holding its Lease", keeper.Held)
	renewed, err := getLease(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	if !renewed.Spec.RenewTime.After(first.Spec.RenewTime.Time) {
		t.Fatalf("renewTime did not move: %s then %s", first.Spec.RenewTime, renewed.Spec.RenewTime)
	}

	// A clean shutdown releases the Lease, so the controller moves the
	// pod's conversations at once.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if keeper.Held() {
		t.Error("still held after shutdown")
	}
	if _, err := getLease(t, pod); !apierrors.IsNotFound(err) {
		t.Fatalf("Lease after shutdown: %v, want it deleted", err)
	}
}

// TestSelfFencingWhenTheAPIServerIsUnreachable: a runtime cut off from the
// API server stops acting before its Lease expires, and acts again only with
// a fresh Lease.
func TestSelfFencingWhenTheAPIServerIsUnreachable(t *testing.T) {
	pod := newPod(t, "partitioned")
	var cut atomic.Bool
	const duration = 3 * time.Second
	keeper := runtime.NewLeaseKeeper(partitionableClient(t, &cut), pod, duration, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = keeper.Run(ctx) }()
	waitFor(t, 5*time.Second, "the Lease held", keeper.Held)
	lost := keeper.Lost()

	cut.Store(true)
	lease, err := getLease(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	expiry := lease.Spec.RenewTime.Add(duration)
	select {
	case <-lost:
	case <-time.After(2 * duration):
		t.Fatal("the runtime kept acting with a Lease it could not renew")
	}
	stopped := time.Now()
	if keeper.Held() {
		t.Error("Held after Lost was closed")
	}
	if !stopped.Before(expiry) {
		t.Fatalf("stopped acting at %s, not before the Lease expired at %s", stopped.Format(time.RFC3339Nano), expiry.Format(time.RFC3339Nano))
	}
	t.Logf("stopped acting %s before the Lease expired", expiry.Sub(stopped).Round(time.Millisecond))

	// Back in touch: a fresh renewal, a fresh Lost channel.
	cut.Store(false)
	waitFor(t, 5*time.Second, "the Lease held again", keeper.Held)
	select {
	case <-keeper.Lost():
		t.Fatal("Lost is still closed with a fresh Lease")
	default:
	}
}

// countingClient counts the requests for Leases it sends, by method.
func countingClient(t *testing.T, counts map[string]*atomic.Int32) client.Client {
	t.Helper()
	return clientThrough(t, func(req *http.Request) error {
		if n, ok := counts[req.Method]; ok && strings.Contains(req.URL.Path, "/leases") {
			n.Add(1)
		}
		return nil
	})
}

// TestARenewalIsOneRequest: once the Lease is held, each renewal is one
// update of the copy the keeper last wrote, not a read and an update; a
// Lease changed behind its back is read again and renewed.
func TestARenewalIsOneRequest(t *testing.T) {
	pod := newPod(t, "renewals")
	counts := map[string]*atomic.Int32{http.MethodGet: {}, http.MethodPut: {}, http.MethodPost: {}}
	keeper := runtime.NewLeaseKeeper(countingClient(t, counts), pod, 3*time.Second, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- keeper.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, 5*time.Second, "the Lease held", keeper.Held)
	waitFor(t, 5*time.Second, "three renewals", func() bool { return counts[http.MethodPut].Load() >= 3 })
	if gets := counts[http.MethodGet].Load(); gets > 1 {
		t.Fatalf("%d reads for %d renewals: want only the first renewal's", gets, counts[http.MethodPut].Load())
	}

	// Another writer changes the Lease: the next update conflicts, and the
	// keeper reads it and renews it all the same.
	var lease *coordinationv1.Lease
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		if lease, err = getLease(t, pod); err != nil {
			return err
		}
		lease.Labels["touched"] = "yes"
		return env.Client.Update(context.Background(), lease)
	}); err != nil {
		t.Fatal(err)
	}
	// The renewal that conflicts reads the Lease and updates it at once.
	waitFor(t, 3*time.Second, "a renewal after the change", func() bool {
		l, err := getLease(t, pod)
		return err == nil && l.Spec.RenewTime.After(lease.Spec.RenewTime.Time) && l.Labels["touched"] == "yes"
	})
	if !keeper.Held() {
		t.Fatal("the Lease was lost over a change behind the keeper's back")
	}
}
