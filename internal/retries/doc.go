// Package retries is the backoff Tether's controllers use after a failed
// reconcile: bounded per object, with controller-runtime's overall limit.
package retries
