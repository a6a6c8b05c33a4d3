package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/textlimit"
)

// AgentReconciler runs the worker pods of an Agent with a template (one
// Deployment per Agent, replicas following spec.replicas and so the scale
// subresource) and reports every Agent's pods, load and capacity.
type AgentReconciler struct {
	client.Client
	Clock clock.PassiveClock
	// Wiring is added to every templated Agent's pods.
	Wiring RuntimeWiring

	slots *slotTracker

	// rebalanced is when each Agent's last rebalance began.
	rebalanceMu sync.Mutex
	rebalanced  map[client.ObjectKey]time.Time

	// statusWritten is when each Agent's status was last written
	// (agent_status_pace.go).
	statusMu      sync.Mutex
	statusWritten map[client.ObjectKey]time.Time
}

// +kubebuilder:rbac:groups=tether.dev,resources=agents,verbs=get;list;watch
// +kubebuilder:rbac:groups=tether.dev,resources=agents/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete

// Reconcile brings one Agent's Deployment and status up to date.
func (r *AgentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	agent := &tetherv1alpha1.Agent{}
	if err := r.Get(ctx, req.NamespacedName, agent); err != nil {
		if apierrors.IsNotFound(err) {
			r.forgetRebalance(req.NamespacedName)
			r.forgetStatus(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !agent.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	return r.reconcile(ctx, agent)
}

func (r *AgentReconciler) reconcile(ctx context.Context, agent *tetherv1alpha1.Agent) (ctrl.Result, error) {
	old := agent.Status.DeepCopy()
	workers, err := listWorkerPods(ctx, r.Client, agent)
	if err != nil {
		return ctrl.Result{}, err
	}
	// The slot tracker's counts: this reconcile was woken by it (or by a
	// pod, Lease or the Agent), after it counted what changed.
	loads := map[string]int32{}
	_ = r.slots.read(func(v slotView) error {
		for _, w := range workers {
			loads[w.pod.Name] = v.load(w.pod.Namespace, w.pod.Name, w.pod.UID)
		}
		return nil
	})
	waiting := r.slots.waitingCount(agent.Namespace, agent.Name) // demand the pods must grow for
	// Drains and deletion costs first: the ReplicaSet picks the pods to
	// remove by their costs when the replicas fall.
	plan := planScale(agent, workers, loads, waiting)
	costErr := errors.Join(r.syncDrains(ctx, agent, plan), r.syncDeletionCosts(ctx, agent, workers, loads, plan.drained))
	var rebalanceIn time.Duration
	if len(plan.drain) == 0 && len(plan.undrain) == 0 {
		var err error
		rebalanceIn, err = r.rebalance(ctx, agent, workers, loads, waiting)
		costErr = errors.Join(costErr, err)
	}
	deployErr := errors.Join(r.syncDeployment(ctx, agent, &plan.replicas), r.syncBudget(ctx, agent))
	selector, err := agentPodSelector(agent)
	if err != nil {
		return ctrl.Result{}, reconcile.TerminalError(err)
	}
	status, recheck := computeAgentStatus(agent, workers, loads, selector.String(), r.Clock.Now())
	if deployErr != nil {
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{
			Type: string(tetherv1alpha1.ConditionReady), Status: metav1.ConditionFalse, Reason: string(tetherv1alpha1.ReasonDeploymentFailed),
			Message: textlimit.Truncate(deployErr.Error(), 1024), LastTransitionTime: metav1.NewTime(r.Clock.Now()), ObservedGeneration: agent.Generation,
		})
	}
	agent.Status = status
	var pace time.Duration
	if !equality.Semantic.DeepEqual(*old, agent.Status) {
		pace = r.statusPace(client.ObjectKeyFromObject(agent), old, &agent.Status)
	}
	if !equality.Semantic.DeepEqual(*old, agent.Status) && pace == 0 {
		if err := r.Status().Update(ctx, agent); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{}, nil
			}
			return ctrl.Result{}, fmt.Errorf("writing status: %w", err)
		}
	}
	if err := errors.Join(deployErr, costErr); err != nil {
		return ctrl.Result{}, err
	}
	// A pod's Lease can expire without any event, a node or pod settle
	// for a rebalance, a status held back be due; look again then.
	if next := soonest(recheck, rebalanceIn, pace); next > 0 {
		return ctrl.Result{RequeueAfter: next + 10*time.Millisecond}, nil
	}
	return ctrl.Result{}, nil
}

// syncDeployment creates or updates the Deployment of an Agent with a
// template, with replicas when set (autoscaling) or spec.replicas. Agents
// with a selector run their own pods.
func (r *AgentReconciler) syncDeployment(ctx context.Context, agent *tetherv1alpha1.Agent, replicas *int32) error {
	if agent.Spec.Template == nil {
		return nil
	}
	desired, err := desiredDeployment(agent, r.Wiring)
	if err != nil {
		return reconcile.TerminalError(err) // the Agent must change; its Ready condition says why
	}
	if replicas != nil {
		desired.Spec.Replicas = replicas
	}
	if err := controllerutil.SetControllerReference(agent, desired, r.Scheme()); err != nil {
		return err
	}
	var current appsv1.Deployment
	err = r.Get(ctx, client.ObjectKeyFromObject(desired), &current)
	if apierrors.IsNotFound(err) {
		if err := r.Create(ctx, desired); err != nil {
			return fmt.Errorf("creating Deployment %s: %w", desired.Name, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(&current, agent) {
		return reconcile.TerminalError(fmt.Errorf("deployment %s exists and is not managed by this Agent; rename one of them", current.Name))
	}
	if current.Annotations[templateHashAnnotation] == desired.Annotations[templateHashAnnotation] &&
		current.Spec.Replicas != nil && *current.Spec.Replicas == *desired.Spec.Replicas {
		return nil
	}
	if current.Annotations == nil {
		current.Annotations = map[string]string{}
	}
	current.Annotations[templateHashAnnotation] = desired.Annotations[templateHashAnnotation]
	current.Labels = desired.Labels
	current.Spec.Replicas = desired.Spec.Replicas
	current.Spec.Template = desired.Spec.Template
	if err := r.Update(ctx, &current); err != nil {
		return fmt.Errorf("updating Deployment %s: %w", current.Name, err)
	}
	return nil
}

// SetupWithManager registers the controller. Pods and Leases reach their
// Agent through the tether.dev/agent label; conversations through the slot
// tracker (changed), once it counted them taking, giving up or waiting for a
// slot.
func (r *AgentReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int, changed <-chan event.GenericEvent) error {
	byAgentLabel := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		agent := obj.GetLabels()[tetherv1alpha1.AgentLabel]
		if agent == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: obj.GetNamespace(), Name: agent}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("agent").
		For(&tetherv1alpha1.Agent{}).
		Owns(&appsv1.Deployment{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		WithOptions(controller.Options{RateLimiter: retryBackoff(), MaxConcurrentReconciles: concurrency}).
		Watches(&corev1.Pod{}, byAgentLabel).
		Watches(&coordinationv1.Lease{}, byAgentLabel).
		WatchesRawSource(source.Channel(changed, &handler.EnqueueRequestForObject{})).
		Complete(r)
}
