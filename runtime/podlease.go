package runtime

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// Pod identifies the worker pod a runtime runs in.
type Pod struct {
	Namespace, Name string
	UID             types.UID
	IP              string
	Agent           string
}

// LeaseKeeper holds a pod's Lease: it creates it, renews it every third of
// its duration, and says whether the runtime may act. The runtime may act
// only while its last successful renewal is younger than the duration minus
// a safety margin, measured on this process's monotonic clock from before the
// renewal was sent; so it stops acting before the controller, reading the
// same renewal, can decide that the Lease has expired.
type LeaseKeeper struct {
	client   client.Client
	pod      Pod
	duration time.Duration
	margin   time.Duration
	clock    clock.Clock

	mu sync.Mutex
	// renewedAt is when the last successful renewal was sent; zero before
	// the first.
	renewedAt time.Time
	// lost is closed when the runtime must stop acting; a new channel is
	// made when the Lease is held again.
	lost chan struct{}
	// written is the Lease as this keeper last wrote it, so that a renewal
	// is one update, not a read and an update; nil when unknown (before
	// the first renewal, after a failed one). Only Run touches it.
	written *coordinationv1.Lease
}

// NewLeaseKeeper returns a keeper of pod's Lease with the given duration,
// kept within the Agent API's bounds of 2 to 300 seconds.
func NewLeaseKeeper(c client.Client, pod Pod, duration time.Duration, clk clock.Clock) *LeaseKeeper {
	duration = min(max(duration, 2*time.Second), 300*time.Second).Truncate(time.Second)
	if clk == nil {
		clk = clock.RealClock{}
	}
	lost := make(chan struct{})
	close(lost) // not held until the first renewal
	return &LeaseKeeper{
		client: c, pod: pod, duration: duration, clock: clk, lost: lost,
		// Stop acting a fifth of the duration (at least a second, at most
		// half) before the Lease could expire.
		margin: min(max(duration/5, time.Second), duration/2),
	}
}

// Held reports whether the runtime may act now.
func (k *LeaseKeeper) Held() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.heldLocked(k.clock.Now())
}

func (k *LeaseKeeper) heldLocked(now time.Time) bool {
	return !k.renewedAt.IsZero() && now.Sub(k.renewedAt) < k.duration-k.margin
}

// Lost returns a channel that is closed when the runtime must stop acting.
// Take it again after Held turns true.
func (k *LeaseKeeper) Lost() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lost
}

// Run renews the Lease until ctx ends, then deletes it so the controller
// moves the pod's conversations at once.
func (k *LeaseKeeper) Run(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithValues("lease", k.pod.Name)
	interval := k.duration / 3
	for {
		sent := k.clock.Now()
		err := k.renew(ctx, sent)
		k.mu.Lock()
		if err == nil {
			if !k.heldLocked(sent) {
				k.lost = make(chan struct{})
				log.Info("Lease held")
			}
			k.renewedAt = sent
		} else {
			log.Error(err, "renewing the Lease")
		}
		k.mu.Unlock()

		// Wake up for the next renewal, or when the Lease would stop
		// being held, whichever is first.
		wait := interval
		k.mu.Lock()
		if !k.renewedAt.IsZero() {
			if untilLost := k.renewedAt.Add(k.duration - k.margin).Sub(k.clock.Now()); untilLost > 0 && untilLost < wait {
				wait = untilLost
			}
		}
		k.mu.Unlock()
		if err != nil {
			wait = min(wait, time.Second)
		}
		select {
		case <-ctx.Done():
			k.fence(log)
			k.release()
			return nil
		case <-k.clock.After(wait):
		}
		k.mu.Lock()
		if !k.heldLocked(k.clock.Now()) {
			k.fenceLocked(log)
		}
		k.mu.Unlock()
	}
}

func (k *LeaseKeeper) fence(log interface{ Info(string, ...any) }) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fenceLocked(log)
}

func (k *LeaseKeeper) fenceLocked(log interface{ Info(string, ...any) }) {
	select {
	case <-k.lost:
	default:
		close(k.lost)
		log.Info("Lease not renewed in time: no longer acting for any conversation")
	}
	k.renewedAt = time.Time{}
}

// renew creates or updates the Lease with renewTime sent. It updates the
// copy it last wrote; one that fails (the Lease changed or went behind its
// back, or the outcome is unknown) is read again.
func (k *LeaseKeeper) renew(ctx context.Context, sent time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, k.duration/3)
	defer cancel()
	now := metav1.NewMicroTime(sent)
	if last := k.written; last != nil {
		k.written = nil
		lease := last.DeepCopy()
		lease.Spec.RenewTime = &now
		err := k.client.Update(ctx, lease)
		if err == nil {
			k.written = lease
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("updating: %w", err)
		}
	}
	seconds := int32(k.duration / time.Second) //nolint:gosec // NewLeaseKeeper keeps the duration within 2-300 s
	lease := &coordinationv1.Lease{}
	err := k.client.Get(ctx, client.ObjectKey{Namespace: k.pod.Namespace, Name: k.pod.Name}, lease)
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: k.pod.Namespace, Name: k.pod.Name,
				Labels: map[string]string{tetherv1alpha1.AgentLabel: k.pod.Agent},
				// The Lease goes with its pod.
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: k.pod.Name, UID: k.pod.UID}},
			},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: ptr.To(string(k.pod.UID)), LeaseDurationSeconds: &seconds, AcquireTime: &now, RenewTime: &now,
			},
		}
		if err := k.client.Create(ctx, lease); err != nil {
			return err
		}
		k.written = lease
		return nil
	}
	if err != nil {
		return err
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != string(k.pod.UID) {
		// A Lease left by an earlier pod of the same name: take it over.
		lease.Spec.HolderIdentity = ptr.To(string(k.pod.UID))
		lease.Spec.AcquireTime = &now
		lease.Spec.LeaseTransitions = ptr.To(ptr.Deref(lease.Spec.LeaseTransitions, 0) + 1)
	}
	lease.Spec.RenewTime = &now
	lease.Spec.LeaseDurationSeconds = &seconds
	if lease.Labels == nil {
		lease.Labels = map[string]string{}
	}
	lease.Labels[tetherv1alpha1.AgentLabel] = k.pod.Agent
	if err := k.client.Update(ctx, lease); err != nil {
		return fmt.Errorf("updating: %w", err)
	}
	k.written = lease
	return nil
}

// release deletes the Lease on a clean shutdown, so that the controller moves
// the pod's conversations without waiting for it to expire. A Lease another
// pod incarnation holds is left alone.
func (k *LeaseKeeper) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lease := &coordinationv1.Lease{}
	if err := k.client.Get(ctx, client.ObjectKey{Namespace: k.pod.Namespace, Name: k.pod.Name}, lease); err != nil {
		return
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != string(k.pod.UID) {
		return
	}
	_ = k.client.Delete(ctx, lease, client.Preconditions{UID: &lease.UID, ResourceVersion: &lease.ResourceVersion})
}
