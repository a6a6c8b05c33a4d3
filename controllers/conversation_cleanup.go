package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
)

// LogFinalizer keeps a Conversation whose log lives outside the cluster (the
// redis store) until the controller has deleted that log, so no transcript
// is left behind. The kubernetes store's objects are owned by the
// Conversation and go with it through garbage collection; the memory store
// dies with its pod.
const LogFinalizer = "tether.dev/event-log"

// StoreOpener opens the event log an Agent's store settings name.
type StoreOpener func(ctx context.Context, spec tetherv1alpha1.StoreSpec, namespace string) (eventlog.Log, error)

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

func needsLogFinalizer(agent *tetherv1alpha1.Agent) bool {
	return agent != nil && agent.Spec.Store.Type == tetherv1alpha1.StoreRedis
}

// ensureLogFinalizer adds the finalizer when the Agent's store needs it; conv
// comes back from the write with its new resourceVersion.
func (r *ConversationReconciler) ensureLogFinalizer(ctx context.Context, conv *tetherv1alpha1.Conversation, agent *tetherv1alpha1.Agent) error {
	if !needsLogFinalizer(agent) || controllerutil.ContainsFinalizer(conv, LogFinalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(conv.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(conv, LogFinalizer)
	if err := r.Patch(ctx, conv, patch); err != nil {
		return fmt.Errorf("adding the event-log finalizer: %w", err)
	}
	return nil
}

// finalize deletes a deleted Conversation's log from its Agent's store, then
// lets the object go. A store that is down keeps the object (and so the
// means to delete the log) until it is back.
func (r *ConversationReconciler) finalize(ctx context.Context, conv *tetherv1alpha1.Conversation) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(conv, LogFinalizer) {
		return ctrl.Result{}, nil
	}
	agent, err := r.getAgent(ctx, conv)
	if err != nil {
		return ctrl.Result{}, err
	}
	if agent == nil {
		r.Recorder.Eventf(conv, nil, corev1.EventTypeWarning, string(tetherv1alpha1.EventLogNotDeleted), "DeleteLog",
			"Agent %q is gone, so its store is unknown; the conversation's event log could not be deleted", conv.Spec.AgentRef.Name)
	} else if err := r.deleteLog(ctx, conv, agent); err != nil {
		r.Recorder.Eventf(conv, nil, corev1.EventTypeWarning, string(tetherv1alpha1.EventLogNotDeleted), "DeleteLog", "deleting the event log: %v; retrying", err)
		return ctrl.Result{}, err
	}
	patch := client.MergeFromWithOptions(conv.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(conv, LogFinalizer)
	if err := r.Patch(ctx, conv, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("removing the finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}

func (r *ConversationReconciler) deleteLog(ctx context.Context, conv *tetherv1alpha1.Conversation, agent *tetherv1alpha1.Agent) error {
	log, err := r.OpenStore(ctx, agent.Spec.Store, agent.Namespace)
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }()
	return log.Delete(ctx, eventlog.Key{Namespace: conv.Namespace, Name: conv.Name, UID: string(conv.UID)})
}
