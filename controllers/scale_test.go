package controllers_test

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// The scale of TestRescheduleAThousand: 1,000 conversations on 10 pods of
// 200 slots by default; docs/benchmarks.md runs it at 10,000 on 20.
var (
	scaleConversations = flag.Int("scale.conversations", 1000, "conversations TestRescheduleAThousand places")
	scalePods          = flag.Int("scale.pods", 10, "pods it places them on (each with room for twice its share)")
)

// TestRescheduleAThousand places 1,000 conversations on 10 pods, deletes one
// pod, and checks that every conversation it held moved to another pod. It
// logs how long that took and how many API writes the manager made per
// moved conversation (figures for docs/operations.md, not assertions).
func TestRescheduleAThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 1,000 conversations")
	}
	n, podCount := *scaleConversations, *scalePods
	ns := newNamespace(t)
	ctx := context.Background()
	newSelectorAgent(t, ns, "fleet", int32(2*n/podCount)) //nolint:gosec // test sizes
	pods := make([]workerPod, podCount)
	for i := range pods {
		pods[i] = startPod(t, ns, "fleet", fmt.Sprintf("fleet-%d", i), fmt.Sprintf("127.0.8.%d", i+1), 300)
	}
	time.Sleep(200 * time.Millisecond)

	start := time.Now()
	forEach(t, n, func(i int) error {
		return k8s.Create(ctx, newFleetConversation(ns, fmt.Sprintf("c-%04d", i), "fleet"))
	})
	eventuallyEvery(t, 250*time.Millisecond, time.Duration(n)*60*time.Millisecond, fmt.Sprintf("%d conversations placed", n), func() (bool, string) {
		loads := loadsByPod(t, ns)
		total := 0
		for _, n := range loads {
			total += n
		}
		return total == n, fmt.Sprint(loads)
	})
	took := time.Since(start)
	t.Logf("placed %d conversations on %d pods in %s (%.0f a second): %v", n, podCount, took.Round(time.Millisecond), float64(n)/took.Seconds(), loadsByPod(t, ns))

	victim := pods[3].pod
	held := loadsByPod(t, ns)[victim.Name]
	writesBefore := writes.Load()
	deleted := time.Now()
	if err := k8s.Delete(ctx, victim, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	var last time.Time
	eventuallyEvery(t, 250*time.Millisecond, 60*time.Second, "every conversation of the deleted pod moved", func() (bool, string) {
		var list tetherv1alpha1.ConversationList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		moved, stuck := 0, 0
		for _, c := range list.Items {
			switch {
			case c.Status.Owner == nil || c.Status.Owner.Name == victim.Name:
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
	// Let trailing writes (Agent status, events) land before counting.
	time.Sleep(time.Second)
	total := writes.Load() - writesBefore
	for pod, count := range loadsByPod(t, ns) {
		if pod == victim.Name {
			t.Errorf("%d conversations still on the deleted pod", count)
		}
		if limit := 2 * n / podCount; count > limit {
			t.Errorf("pod %s holds %d, over its capacity %d", pod, count, limit)
		}
	}
	t.Logf("pod %s held %d conversations; all moved %s after its deletion (%.1f ms a move); %d API writes by the manager (%.2f per moved conversation, events and Agent status included)",
		victim.Name, held, last.Sub(deleted).Round(time.Millisecond), float64(last.Sub(deleted).Microseconds())/1000/float64(held), total, float64(total)/float64(held))
}
