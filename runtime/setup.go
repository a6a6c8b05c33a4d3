package runtime

import (
	"cmp"
	"context"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/retries"
)

// CacheOptions limits a runtime's cache to the Conversations assigned to its
// pod: the API server filters by the selectable field status.owner.name, so
// the runtime never sees another pod's conversations.
func CacheOptions(pod Pod) cache.Options {
	return cache.Options{
		DefaultNamespaces: map[string]cache.Config{pod.Namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&tetherv1alpha1.Conversation{}: {Field: fields.OneTermEqualSelector(tetherv1alpha1.OwnerField, pod.Name)},
		},
	}
}

// SetupWithManager registers the host's controller, and a watcher that drops
// every conversation when the pod's Lease is lost and looks at all of them
// again once it is held.
func (h *Host) SetupWithManager(mgr ctrl.Manager) error {
	again := make(chan event.GenericEvent, 1024)
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		h.watchLease(ctx, again)
		return nil
	})); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("runtime").
		For(&tetherv1alpha1.Conversation{}).
		WithOptions(controller.Options{RateLimiter: claimRetries(), MaxConcurrentReconciles: cmp.Or(max(h.ClaimConcurrency, 0), 8)}).
		WatchesRawSource(source.Channel(again, &handler.EnqueueRequestForObject{})).
		Complete(h)
}

func (h *Host) watchLease(ctx context.Context, again chan<- event.GenericEvent) {
	for {
		select {
		case <-ctx.Done():
			h.DropAll()
			return
		case <-h.Lease.Lost():
		}
		h.DropAll()
		for !h.Lease.Held() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		var list tetherv1alpha1.ConversationList
		if err := h.Client.List(ctx, &list); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing this pod's conversations after the Lease came back")
			continue
		}
		// Live conversations first: their clients wait on the claim,
		// while a finished one only serves its history.
		slices.SortStableFunc(list.Items, func(a, b tetherv1alpha1.Conversation) int {
			return cmp.Compare(b2i(a.Status.Phase.IsFinished()), b2i(b.Status.Phase.IsFinished()))
		})
		for i := range list.Items {
			select {
			case again <- event.GenericEvent{Object: &list.Items[i]}:
			case <-ctx.Done():
				return
			}
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// maxClaimBackoff bounds how long a conversation assigned to this pod waits
// between two tries to claim it. A claim fails while the store is away (a
// Redis restarting, the API server restarting); the default backoff of a
// controller doubles up to 1000 s, and a conversation placed here would sit
// unclaimed, its clients held, for minutes after the store came back (found
// by the chaos suite).
const maxClaimBackoff = 2 * time.Second

// claimRetries is the runtime controller's backoff: per conversation from
// 50 ms, doubling, at most maxClaimBackoff, within the overall limit that
// keeps the pods of a whole cluster from retrying every conversation at
// once against a store that has just come back.
func claimRetries() workqueue.TypedRateLimiter[reconcile.Request] {
	return retries.Bounded(50*time.Millisecond, maxClaimBackoff)
}
