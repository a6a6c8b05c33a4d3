package controllers

import (
	"time"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"tether.dev/tether/internal/retries"
)

// maxRetryBackoff bounds how long an object whose reconcile failed waits
// before the next try: a placement that failed again and again while the
// API server or a store was away is tried again soon after it is back.
// Moves are already held back by a Lease duration after the API server
// returns (visibility.go); the retry adds at most this much.
const maxRetryBackoff = 5 * time.Second

// retryBackoff is the manager controllers' backoff after an error.
func retryBackoff() workqueue.TypedRateLimiter[reconcile.Request] {
	return retries.Bounded(5*time.Millisecond, maxRetryBackoff)
}
