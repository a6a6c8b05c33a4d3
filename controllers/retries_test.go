package controllers

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestRetriesStayShort: an object whose reconcile keeps failing (the API
// server or a store away for minutes) is tried again at most
// maxRetryBackoff later however many times it failed, while the overall
// limit still spreads the retries of many objects out.
func TestRetriesStayShort(t *testing.T) {
	request := func(i int) reconcile.Request {
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: fmt.Sprintf("c%d", i)}}
	}
	tests := []struct {
		name string
		// objects fail once each, in turn, failures times over; the last
		// failure's wait is checked.
		objects, failures int
		atLeast, atMost   time.Duration
	}{
		{name: "one failure is retried at once", objects: 1, failures: 1, atMost: 10 * time.Millisecond},
		{name: "ten failures back off", objects: 1, failures: 10, atLeast: time.Second, atMost: maxRetryBackoff},
		{name: "a hundred failures wait no longer than the bound", objects: 1, failures: 100, atLeast: maxRetryBackoff, atMost: maxRetryBackoff},
		{name: "many objects failing at once are spread out", objects: 300, failures: 1, atLeast: 15 * time.Second, atMost: 25 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			limiter := retryBackoff()
			var last time.Duration
			for range tc.failures {
				for i := range tc.objects {
					last = limiter.When(request(i))
				}
			}
			if last < tc.atLeast || last > tc.atMost {
				t.Fatalf("the last retry waits %s, want %s to %s", last, tc.atLeast, tc.atMost)
			}
		})
	}
}
