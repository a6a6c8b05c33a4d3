package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// ConversationReconciler places conversations, moves them off lost owners
// with a new epoch, suspends idle ones, wakes them on request and deletes
// finished ones after their TTL. It writes only the controller's status
// fields (owner, lease, rescheduleCount, the Scheduled condition, and the
// phases Pending, Rescheduling and Suspended), always with the
// resourceVersion it read.
type ConversationReconciler struct {
	client.Client
	Clock    clock.PassiveClock
	Recorder events.EventRecorder
	// NotReadyGrace is how long an owner pod may be not ready before its
	// conversations move.
	NotReadyGrace time.Duration
	// OpenStore opens an Agent's event log, to delete a deleted
	// conversation's log.
	OpenStore StoreOpener
	// Visibility says since when the manager has seen the API server
	// without a gap; nil: always.
	Visibility *APIVisibility

	reservations *reservations
	slots        *slotTracker
	ownership    ownershipHistory
}

// outcome is what a reconcile did, reported as events and metrics once the
// status write has succeeded.
type outcome struct {
	lostFrom, lostMessage string
	lostReason            tetherv1alpha1.ConditionReason
	lostAt                time.Time
	// drainedFrom is the drained pod the conversation moved off.
	drainedFrom      string
	suspended, woken bool
	placedOn         string
	waitingSince     time.Time
	// flapping holds off suspension; flapWarning, once a window, lists the
	// phases of its recent ownership changes.
	flapping    bool
	flapWarning string
}

// +kubebuilder:rbac:groups=tether.dev,resources=conversations,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups=tether.dev,resources=conversations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tether.dev,resources=agents,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one Conversation's placement in line with its pods.
func (r *ConversationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	conv := &tetherv1alpha1.Conversation{}
	if err := r.Get(ctx, req.NamespacedName, conv); err != nil {
		if apierrors.IsNotFound(err) {
			r.ownership.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !conv.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, conv)
	}
	var epoch int64
	if conv.Status.Lease != nil {
		epoch = conv.Status.Lease.Epoch
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("phase", conv.Status.Phase, "epoch", epoch))
	return r.reconcile(ctx, conv)
}

func (r *ConversationReconciler) reconcile(ctx context.Context, conv *tetherv1alpha1.Conversation) (ctrl.Result, error) {
	now := r.Clock.Now()
	if conv.Status.Phase.IsFinished() {
		return r.reconcileFinished(ctx, conv, now)
	}
	agent, err := r.getAgent(ctx, conv)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.ensureLogFinalizer(ctx, conv, agent); err != nil {
		return ctrl.Result{}, err
	}

	old := conv.DeepCopy()
	var out outcome
	var result ctrl.Result
	_, wake := conv.Annotations[tetherv1alpha1.WakeAnnotation]
	out.flapping, out.flapWarning = r.ownership.observe(conv, now)

	switch {
	case conv.Status.Phase == tetherv1alpha1.PhaseSuspended:
		if !wake {
			return ctrl.Result{}, nil
		}
		conv.Status.Phase = tetherv1alpha1.PhasePending
		// Someone asked for it: the idle clock starts again.
		conv.Status.LastActiveTime = ptr.To(metav1.NewTime(now))
		setCondition(conv, tetherv1alpha1.ConditionScheduled, metav1.ConditionFalse, tetherv1alpha1.ReasonWakeRequested, "woken on request; waiting for a pod", now)
		out.woken = true
	case conv.Status.Owner != nil:
		result = r.checkOwner(ctx, conv, agent, now, &out)
		if out.flapping && result.RequeueAfter == 0 {
			result.RequeueAfter = flapWindow // to suspend it once it settled
		}
	}

	if needsPlacement(conv) {
		if err := r.place(ctx, conv, agent, now, &out); err != nil {
			return ctrl.Result{}, err
		}
	}
	if out.drainedFrom != "" && out.placedOn == "" {
		// No room elsewhere: better parked on its drained pod than owned by
		// none. It stays, and looks again.
		conv.Status = *old.Status.DeepCopy()
		out.drainedFrom = ""
		result = ctrl.Result{RequeueAfter: drainRetry}
	}

	if out.flapWarning != "" {
		flapsTotal.Inc()
		r.Recorder.Eventf(conv, nil, corev1.EventTypeWarning, string(tetherv1alpha1.ReasonFlapping), "HoldSuspension",
			"changed owner more than %d times in %s (%s); not suspended until it settles: look for a client waking it or a pod that keeps failing",
			maxOwnershipChanges, flapWindow, out.flapWarning)
	}
	if !equality.Semantic.DeepEqual(old.Status, conv.Status) {
		conv.Status.ObservedGeneration = conv.Generation
		if err := r.Status().Update(ctx, conv); err != nil {
			if out.placedOn != "" {
				r.reservations.release(conv)
			}
			if apierrors.IsConflict(err) {
				// Someone (the owner runtime, usually) wrote first; decide
				// again on the newer object, which its watch event brings.
				return ctrl.Result{}, nil
			}
			return ctrl.Result{}, fmt.Errorf("writing status: %w", err)
		}
		r.report(conv, &out, now)
	}
	if wake {
		if err := r.clearWake(ctx, conv); err != nil {
			return ctrl.Result{}, err
		}
	}
	return result, nil
}

// checkOwner moves a conversation off an owner that is lost, suspends it when
// idle for too long, and otherwise says when to look again.
func (r *ConversationReconciler) checkOwner(ctx context.Context, conv *tetherv1alpha1.Conversation, agent *tetherv1alpha1.Agent, now time.Time, out *outcome) ctrl.Result {
	owner := conv.Status.Owner
	pod, lease, err := getPodAndLease(ctx, r.Client, conv.Namespace, owner.Name)
	if err != nil {
		// The cache does not fail reads of known types; stay put.
		ctrl.LoggerFrom(ctx).Error(err, "reading the owner pod", "pod", owner.Name)
		return ctrl.Result{RequeueAfter: time.Second}
	}
	verdict := judgeOwner(owner, pod, lease, now, r.NotReadyGrace, r.Visibility.Since())
	if verdict.lost {
		out.lostFrom, out.lostReason, out.lostMessage, out.lostAt = owner.Name, verdict.reason, verdict.message, verdict.lostAt
		revoke(conv, tetherv1alpha1.PhaseRescheduling, verdict.reason, verdict.message, now)
		conv.Status.RescheduleCount++
		return ctrl.Result{}
	}
	if moved := r.drain(conv, pod, now, out); moved {
		return ctrl.Result{}
	}
	result := ctrl.Result{RequeueAfter: verdict.recheckAfter}
	if at, ok := idleSuspendAt(conv, agent); ok && !out.flapping {
		if !now.Before(at) {
			revoke(conv, tetherv1alpha1.PhaseSuspended, tetherv1alpha1.ReasonIdle,
				fmt.Sprintf("awaiting input, no client since %s; suspended to free its slot", idleSince(conv).UTC().Format(time.RFC3339)), now)
			out.suspended = true
			return ctrl.Result{}
		}
		if wait := at.Sub(now); result.RequeueAfter == 0 || wait < result.RequeueAfter {
			result.RequeueAfter = wait
		}
	}
	return result
}

// place assigns a conversation that has no owner to the least-loaded usable
// pod of its Agent, or records why it cannot.
func (r *ConversationReconciler) place(ctx context.Context, conv *tetherv1alpha1.Conversation, agent *tetherv1alpha1.Agent, now time.Time, out *outcome) error {
	if conv.Status.Phase == "" {
		conv.Status.Phase = tetherv1alpha1.PhasePending
	}
	out.waitingSince = conv.CreationTimestamp.Time
	if c := findCondition(conv, tetherv1alpha1.ConditionScheduled); c != nil && c.Status == metav1.ConditionFalse {
		out.waitingSince = c.LastTransitionTime.Time
	}
	if agent == nil {
		placementsTotal.WithLabelValues("agent_not_found").Inc()
		setCondition(conv, tetherv1alpha1.ConditionScheduled, metav1.ConditionFalse, tetherv1alpha1.ReasonAgentNotFound,
			fmt.Sprintf("Agent %q does not exist in namespace %s; create it and the conversation is placed", conv.Spec.AgentRef.Name, conv.Namespace), now)
		return nil
	}
	workers, err := listWorkerPods(ctx, r.Client, agent)
	if err != nil {
		return err
	}

	r.reservations.mu.Lock()
	defer r.reservations.mu.Unlock()
	var loads []podLoad
	var unusable map[string]int
	if err := r.slots.read(func(v slotView) error {
		loads, unusable = podLoads(workers, v, now)
		return r.reservations.adjust(ctx, r.Client, conv.Namespace, loads, v.holder, now)
	}); err != nil {
		return err
	}
	choose := choosePod
	if out.drainedFrom != "" {
		choose = chooseLoadedPod
	}
	pod := choose(loads, agent.Spec.ConversationsPerPod)
	if pod == nil {
		placementsTotal.WithLabelValues("no_capacity").Inc()
		setCondition(conv, tetherv1alpha1.ConditionScheduled, metav1.ConditionFalse, tetherv1alpha1.ReasonNoCapacity,
			noCapacityMessage(agent, len(workers), len(loads), unusable), now)
		return nil
	}
	placementsTotal.WithLabelValues("placed").Inc()
	assign(conv, pod, agent, now)
	r.reservations.reserve(conv, pod.Name, conv.Status.Lease.Epoch, now)
	out.placedOn = pod.Name
	return nil
}

// podLoads counts the conversations on each usable pod (the slot
// tracker's counts); unusable counts the other pods by why they cannot be
// used.
func podLoads(workers []workerPod, slots slotView, now time.Time) ([]podLoad, map[string]int) {
	var loads []podLoad
	unusable := map[string]int{}
	for _, w := range workers {
		if ok, why := usable(w.pod, w.lease, now); !ok {
			unusable[why]++
			continue
		}
		loads = append(loads, podLoad{pod: w.pod, load: slots.load(w.pod.Namespace, w.pod.Name, w.pod.UID)})
	}
	return loads, unusable
}

func noCapacityMessage(agent *tetherv1alpha1.Agent, pods, usableCount int, unusable map[string]int) string {
	switch {
	case pods == 0:
		return fmt.Sprintf("Agent %s has no worker pods", agent.Name)
	case usableCount == 0:
		return fmt.Sprintf("none of Agent %s's %d pods can take conversations (%s)", agent.Name, pods, describeCounts(unusable))
	default:
		return fmt.Sprintf("all %d usable pods of Agent %s hold %d conversations, their capacity", usableCount, agent.Name, agent.Spec.ConversationsPerPod)
	}
}

// reconcileFinished deletes a finished conversation once its TTL has passed.
func (r *ConversationReconciler) reconcileFinished(ctx context.Context, conv *tetherv1alpha1.Conversation, now time.Time) (ctrl.Result, error) {
	at, ok := deleteAt(conv)
	if !ok {
		return ctrl.Result{}, nil
	}
	if now.Before(at) {
		return ctrl.Result{RequeueAfter: at.Sub(now)}, nil
	}
	err := r.Delete(ctx, conv, client.Preconditions{UID: &conv.UID, ResourceVersion: &conv.ResourceVersion})
	if err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("deleting after TTL: %w", err)
	}
	r.Recorder.Eventf(conv, nil, corev1.EventTypeNormal, string(tetherv1alpha1.EventDeleted), "DeleteAfterTTL",
		"deleted %ds after it finished (ttlSecondsAfterFinished)", *conv.Spec.TTLSecondsAfterFinished)
	return ctrl.Result{}, nil
}

func (r *ConversationReconciler) getAgent(ctx context.Context, conv *tetherv1alpha1.Conversation) (*tetherv1alpha1.Agent, error) {
	agent := &tetherv1alpha1.Agent{}
	err := r.Get(ctx, client.ObjectKey{Namespace: conv.Namespace, Name: conv.Spec.AgentRef.Name}, agent)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return agent, nil
}

// clearWake removes the wake annotation once the controller has acted on it.
// A client that finds the conversation Suspended again asks again.
func (r *ConversationReconciler) clearWake(ctx context.Context, conv *tetherv1alpha1.Conversation) error {
	patch := client.MergeFrom(conv.DeepCopy())
	delete(conv.Annotations, tetherv1alpha1.WakeAnnotation)
	if err := r.Patch(ctx, conv, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing the wake annotation: %w", err)
	}
	return nil
}

// report emits events and observes metrics for a status write that landed.
func (r *ConversationReconciler) report(conv *tetherv1alpha1.Conversation, out *outcome, now time.Time) {
	if out.lostFrom != "" {
		reschedulesTotal.WithLabelValues(string(out.lostReason)).Inc()
		to := "no pod yet"
		if out.placedOn != "" {
			to = "pod " + out.placedOn
			ownerLossToNewOwnerSeconds.Observe(now.Sub(out.lostAt).Seconds())
		}
		r.Recorder.Eventf(conv, nil, corev1.EventTypeWarning, string(tetherv1alpha1.EventRescheduled), "Reschedule",
			"moved from pod %s to %s (epoch %d): %s: %s", out.lostFrom, to, conv.Status.Lease.Epoch, out.lostReason, out.lostMessage)
		return
	}
	if out.drainedFrom != "" {
		reschedulesTotal.WithLabelValues(string(tetherv1alpha1.ReasonOwnerDraining)).Inc()
		to := "no pod yet"
		if out.placedOn != "" {
			to = "pod " + out.placedOn
		}
		r.Recorder.Eventf(conv, nil, corev1.EventTypeNormal, string(tetherv1alpha1.EventMoved), "Move",
			"moved from drained pod %s to %s (epoch %d) at a turn boundary", out.drainedFrom, to, conv.Status.Lease.Epoch)
		return
	}
	if out.suspended {
		r.Recorder.Eventf(conv, nil, corev1.EventTypeNormal, string(tetherv1alpha1.EventSuspended), "Suspend", "idle while awaiting input; pod slot released")
		return
	}
	if out.woken {
		r.Recorder.Eventf(conv, nil, corev1.EventTypeNormal, string(tetherv1alpha1.EventWoken), "Wake", "wake requested")
	}
	if out.placedOn != "" {
		if conv.Status.Phase == tetherv1alpha1.PhaseRescheduling {
			// Placed after waiting for capacity; the loss was recorded when
			// the Scheduled condition went false.
			ownerLossToNewOwnerSeconds.Observe(now.Sub(out.waitingSince).Seconds())
		} else {
			placementSeconds.Observe(now.Sub(out.waitingSince).Seconds())
		}
		r.Recorder.Eventf(conv, nil, corev1.EventTypeNormal, string(tetherv1alpha1.EventPlaced), "Place", "placed on pod %s (epoch %d)", out.placedOn, conv.Status.Lease.Epoch)
	}
}
