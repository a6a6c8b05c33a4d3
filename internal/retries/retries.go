package retries

import (
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Bounded is a controller's backoff after an error: per object from base,
// doubling, at most bound; and, as controller-runtime's default has, at
// most 10 retries a second overall past a burst of 100, so that an API
// server or store that has just come back is not hit by every failed object
// at once. controller-runtime's default per-object bound is 1000 s: an
// object that failed through an outage would wait minutes after it ended.
// Requeues a reconcile asks for and watch events are not limited by it.
func Bounded(base, bound time.Duration) workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](base, bound),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}
