package controllers

import (
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// maxRetryBackoff bounds how long an object whose reconcile failed waits
// before the next try. controller-runtime's default doubles up to 1000 s: a
// placement that failed again and again while the API server or a store was
// away would then wait minutes after it came back, with its conversation's
// clients held. Moves are already held back by a Lease duration after the
// API server returns (visibility.go); the retry adds at most this much.
const maxRetryBackoff = 5 * time.Second

// retries is the manager controllers' backoff after an error: per object
// from 5 ms, doubling, at most maxRetryBackoff; and, as controller-runtime's
// default has, at most 10 retries a second overall past a burst of 100, so
// that an API server that has just come back is not hit by every failed
// object at once. Requeues a reconcile asks for (RequeueAfter) and watch
// events are not limited by it.
func retries() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, maxRetryBackoff),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}
