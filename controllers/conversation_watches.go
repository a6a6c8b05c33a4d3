package controllers

import (
	"context"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// The Conversation controller is driven by events, not polling: a pod or
// Lease that changes reaches the conversations it owns, and capacity that
// appears (a pod becoming usable, a Lease coming alive, an Agent changing, a
// conversation giving up its slot) reaches the conversations waiting for it.

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

// SetupWithManager registers the controller, its cache indexes and metrics.
func (r *ConversationReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, concurrency int) error {
	if err := setupIndexes(ctx, mgr); err != nil {
		return err
	}
	registerMetrics(mgr.GetCache())
	r.reservations = newReservations()
	return ctrl.NewControllerManagedBy(mgr).
		Named("conversation").
		For(&tetherv1alpha1.Conversation{}).
		WithOptions(controller.Options{RateLimiter: retryBackoff(), MaxConcurrentReconciles: concurrency}).
		Watches(&corev1.Pod{}, handler.Funcs{
			CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) { r.podChanged(ctx, e.Object, q) },
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) { r.podChanged(ctx, e.ObjectNew, q) },
			DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) { r.podChanged(ctx, e.Object, q) },
		}).
		Watches(&coordinationv1.Lease{}, handler.Funcs{
			CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) { r.enqueueWaiting(ctx, e.Object, q) },
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
				r.leaseUpdated(ctx, e.ObjectOld, e.ObjectNew, q)
			},
			DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) { r.enqueueOwned(ctx, e.Object, q) },
		}).
		Watches(&tetherv1alpha1.Agent{}, handler.Funcs{
			CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) {
				r.enqueueAgentWaiting(ctx, e.Object.GetNamespace(), e.Object.GetName(), q)
			},
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
				r.enqueueAgentWaiting(ctx, e.ObjectNew.GetNamespace(), e.ObjectNew.GetName(), q)
			},
		}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&tetherv1alpha1.Conversation{}, handler.Funcs{
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
				if holdsSlot(e.ObjectOld.(*tetherv1alpha1.Conversation)) && !holdsSlot(e.ObjectNew.(*tetherv1alpha1.Conversation)) {
					r.slotFreed(ctx, e.ObjectNew, q)
				}
			},
			DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) {
				if conv, ok := e.Object.(*tetherv1alpha1.Conversation); ok && holdsSlot(conv) {
					r.slotFreed(ctx, conv, q)
				}
			},
		}).
		Complete(r)
}

// podChanged reaches the conversations a pod owns and, when the pod can take
// conversations, those waiting on its Agent.
func (r *ConversationReconciler) podChanged(ctx context.Context, obj client.Object, q queue) {
	r.enqueueOwned(ctx, obj, q)
	if pod, ok := obj.(*corev1.Pod); ok && pod.DeletionTimestamp == nil {
		if ready, _ := podReady(pod); ready {
			r.enqueueWaiting(ctx, obj, q)
		}
	}
}

// leaseUpdated ignores plain renewals, which only push the expiry out (each
// owned conversation already has a timer for it). A new holder reaches the
// owned conversations; a Lease coming back to life reaches waiting ones.
func (r *ConversationReconciler) leaseUpdated(ctx context.Context, oldObj, newObj client.Object, q queue) {
	oldLease, ok1 := oldObj.(*coordinationv1.Lease)
	newLease, ok2 := newObj.(*coordinationv1.Lease)
	if !ok1 || !ok2 {
		return
	}
	if ptrString(oldLease.Spec.HolderIdentity) != ptrString(newLease.Spec.HolderIdentity) {
		r.enqueueOwned(ctx, newObj, q)
		r.enqueueWaiting(ctx, newObj, q)
		return
	}
	if oldLease.Spec.RenewTime == nil || oldLease.Spec.LeaseDurationSeconds == nil || newLease.Spec.RenewTime == nil {
		r.enqueueWaiting(ctx, newObj, q)
		return
	}
	oldExpiry := oldLease.Spec.RenewTime.Add(secondsDuration(*oldLease.Spec.LeaseDurationSeconds))
	if !newLease.Spec.RenewTime.Time.Before(oldExpiry) {
		r.enqueueWaiting(ctx, newObj, q)
	}
}

// enqueueOwned enqueues the conversations owned by the pod a Pod or Lease
// (named after its pod) stands for.
func (r *ConversationReconciler) enqueueOwned(ctx context.Context, obj client.Object, q queue) {
	var convs tetherv1alpha1.ConversationList
	if err := r.List(ctx, &convs, client.InNamespace(obj.GetNamespace()), client.MatchingFields{ownerIndex: obj.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing conversations by owner", "pod", obj.GetName())
		return
	}
	for i := range convs.Items {
		q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&convs.Items[i])})
	}
}

// enqueueWaiting enqueues the conversations waiting on the Agent a pod or
// Lease belongs to, by its tether.dev/agent label.
func (r *ConversationReconciler) enqueueWaiting(ctx context.Context, obj client.Object, q queue) {
	if agent := obj.GetLabels()[tetherv1alpha1.AgentLabel]; agent != "" {
		r.enqueueAgentWaiting(ctx, obj.GetNamespace(), agent, q)
	}
}

func (r *ConversationReconciler) slotFreed(ctx context.Context, obj client.Object, q queue) {
	r.enqueueAgentWaiting(ctx, obj.GetNamespace(), obj.(*tetherv1alpha1.Conversation).Spec.AgentRef.Name, q)
}

// enqueueAgentWaiting enqueues the conversations of an Agent that wait for
// a slot, as the slot tracker knows them: not every conversation of the
// Agent.
func (r *ConversationReconciler) enqueueAgentWaiting(_ context.Context, namespace, agent string, q queue) {
	for _, name := range r.slots.waitingFor(namespace, agent) {
		q.Add(reconcile.Request{NamespacedName: name})
	}
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
