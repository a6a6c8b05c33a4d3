package controllers

import (
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// A worker pod's Lease has the pod's name, lives in the pod's namespace and is
// held by the pod's UID, so a new pod with the same name never inherits an old
// pod's Lease.

// leaseExpiry returns when pod's Lease runs out, and false when the Lease is
// missing, held by another pod incarnation or was never renewed.
func leaseExpiry(pod *corev1.Pod, lease *coordinationv1.Lease) (time.Time, bool) {
	if lease == nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != string(pod.UID) ||
		lease.Spec.RenewTime == nil || lease.Spec.LeaseDurationSeconds == nil {
		return time.Time{}, false
	}
	return lease.Spec.RenewTime.Add(time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second), true
}

// podReady returns whether the pod's Ready condition is true and since when it
// has had its current value.
func podReady(pod *corev1.Pod) (bool, time.Time) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue, c.LastTransitionTime.Time
		}
	}
	return false, pod.CreationTimestamp.Time
}

// usable reports whether placement may put a conversation on pod now: running,
// ready, not terminating nor drained, with an IP and a live Lease. The reason says why not.
func usable(pod *corev1.Pod, lease *coordinationv1.Lease, now time.Time) (bool, string) {
	if pod.DeletionTimestamp != nil {
		return false, "terminating"
	}
	if isDrained(pod) {
		return false, "drained"
	}
	if pod.Status.Phase != corev1.PodRunning {
		return false, "phase " + string(pod.Status.Phase)
	}
	if ready, _ := podReady(pod); !ready {
		return false, "not ready"
	}
	if pod.Status.PodIP == "" {
		return false, "no IP"
	}
	expiry, ok := leaseExpiry(pod, lease)
	if !ok {
		return false, "no Lease held by the runtime"
	}
	if !now.Before(expiry) {
		return false, "Lease expired"
	}
	return true, ""
}

// ownerVerdict is what the controller concludes about a conversation's owner.
type ownerVerdict struct {
	// lost means the conversation must move; reason and message say why.
	lost    bool
	reason  tetherv1alpha1.ConditionReason
	message string
	// lostAt is when the owner was lost, as well as can be told.
	lostAt time.Time
	// recheckAfter, for a healthy owner, is when the verdict could change
	// without any event (Lease expiry, not-ready grace); zero means never.
	recheckAfter time.Duration
}

// judgeOwner decides whether owner is still fit to hold a conversation. pod
// and lease are nil when missing from the cache. notReadyGrace is how long a
// pod may be not ready before its conversations move. watchedSince is when
// the manager last began seeing the API server after a gap (APIVisibility):
// a Lease expires no earlier than a whole duration after it, and a pod is
// not ready for longer than the grace no earlier than a grace after it.
func judgeOwner(owner *tetherv1alpha1.OwnerPod, pod *corev1.Pod, lease *coordinationv1.Lease, now time.Time, notReadyGrace time.Duration, watchedSince time.Time) ownerVerdict {
	switch {
	case pod == nil || string(pod.UID) != owner.UID:
		return ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerPodDeleted, lostAt: now,
			message: fmt.Sprintf("owner pod %s no longer exists", owner.Name)}
	case pod.DeletionTimestamp != nil:
		return ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerPodDeleted, lostAt: minTime(now, pod.DeletionTimestamp.Time),
			message: fmt.Sprintf("owner pod %s is terminating", owner.Name)}
	case pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded:
		return ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerPodFailed, lostAt: now,
			message: fmt.Sprintf("owner pod %s is %s", owner.Name, pod.Status.Phase)}
	}

	var recheck time.Duration
	if ready, since := podReady(pod); !ready {
		// Not seen through a gap either: a runtime that could not reach
		// the API server is not ready until it renews its Lease again.
		deadline := latest(since, watchedSince).Add(notReadyGrace)
		if !now.Before(deadline) {
			return ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerPodFailed, lostAt: deadline,
				message: fmt.Sprintf("owner pod %s not ready for more than %s", owner.Name, notReadyGrace)}
		}
		recheck = deadline.Sub(now)
	}

	expiry, ok := leaseExpiry(pod, lease)
	if !ok {
		return ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerLeaseMissing, lostAt: now,
			message: fmt.Sprintf("owner pod %s holds no Lease: its runtime stopped or released it", owner.Name)}
	}
	expiry = latest(expiry, watchedSince.Add(secondsDuration(*lease.Spec.LeaseDurationSeconds)))
	if !now.Before(expiry) {
		return ownerVerdict{lost: true, reason: tetherv1alpha1.ReasonOwnerLeaseExpired, lostAt: expiry,
			message: fmt.Sprintf("owner pod %s did not renew its Lease (expired %s)", owner.Name, expiry.UTC().Format(time.RFC3339Nano))}
	}
	if untilExpiry := expiry.Sub(now); recheck == 0 || untilExpiry < recheck {
		recheck = untilExpiry
	}
	return ownerVerdict{recheckAfter: recheck}
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func secondsDuration(s int32) time.Duration {
	return time.Duration(s) * time.Second
}
