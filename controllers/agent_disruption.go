package controllers

import (
	"context"
	"fmt"

	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete

// desiredBudget is the PodDisruptionBudget of an Agent whose pods the
// manager runs, or nil when it should have none: a node drain takes at
// most maxUnavailable of them at once (1 by default), so the Agent always
// has pods to move the drained ones' conversations to.
func desiredBudget(agent *tetherv1alpha1.Agent) *policyv1.PodDisruptionBudget {
	if agent.Spec.Template == nil || (agent.Spec.DisruptionBudget != nil && agent.Spec.DisruptionBudget.Disabled) {
		return nil
	}
	maxUnavailable := intstr.FromInt32(1)
	if b := agent.Spec.DisruptionBudget; b != nil && b.MaxUnavailable != nil {
		maxUnavailable = *b.MaxUnavailable
	}
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: agent.Name, Namespace: agent.Namespace, Labels: workerLabels(agent)},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &maxUnavailable,
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: agent.Name}},
		},
	}
}

// syncBudget creates, updates or deletes an Agent's PodDisruptionBudget.
// One of the same name the Agent does not control is left alone, and said.
func (r *AgentReconciler) syncBudget(ctx context.Context, agent *tetherv1alpha1.Agent) error {
	desired := desiredBudget(agent)
	var current policyv1.PodDisruptionBudget
	err := r.Get(ctx, client.ObjectKey{Namespace: agent.Namespace, Name: agent.Name}, &current)
	switch {
	case apierrors.IsNotFound(err):
		if desired == nil {
			return nil
		}
		if err := controllerutil.SetControllerReference(agent, desired, r.Scheme()); err != nil {
			return err
		}
		if err := r.Create(ctx, desired); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating PodDisruptionBudget %s: %w", desired.Name, err)
		}
		return nil
	case err != nil:
		return err
	}
	if !metav1.IsControlledBy(&current, agent) {
		if desired == nil {
			return nil
		}
		return reconcile.TerminalError(fmt.Errorf("PodDisruptionBudget %s exists and is not managed by this Agent; rename it, or set spec.disruptionBudget.disabled", current.Name))
	}
	if desired == nil {
		if err := r.Delete(ctx, &current); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting PodDisruptionBudget %s: %w", current.Name, err)
		}
		return nil
	}
	if equality.Semantic.DeepEqual(current.Spec.MaxUnavailable, desired.Spec.MaxUnavailable) &&
		equality.Semantic.DeepEqual(current.Spec.Selector, desired.Spec.Selector) && equality.Semantic.DeepEqual(current.Labels, desired.Labels) {
		return nil
	}
	current.Labels = desired.Labels
	current.Spec.MaxUnavailable, current.Spec.Selector, current.Spec.MinAvailable = desired.Spec.MaxUnavailable, desired.Spec.Selector, nil
	if err := r.Update(ctx, &current); err != nil {
		return fmt.Errorf("updating PodDisruptionBudget %s: %w", current.Name, err)
	}
	return nil
}
