package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// An Agent whose pods the manager runs shrinks without cutting a turn short.
// Its Deployment keeps every pod that holds conversations: when it wants
// fewer pods than hold some (autoscaling's need fell, or spec.replicas was
// lowered), the least loaded of them is drained (tether.dev/drain), its
// conversations move off it one by one at turn boundaries (see
// conversation_drain.go), and once it is empty its deletion cost (-1) makes
// it the one the ReplicaSet removes. One pod drains at a time, and only
// once the empty pods are gone and the others have room for its
// conversations; a drain that is no longer wanted is called off. A pod a
// user drains (any other value of the annotation) is theirs: it counts as
// drained, and the manager never calls it off.

// scaleDownDrain begins the value of the drains the manager makes; it calls
// off only those, never a drain a user asked for.
const scaleDownDrain = "scale-down since "

// scalePlan is how an Agent's Deployment is sized and which pods drain.
type scalePlan struct {
	// replicas is the Deployment's: the pods wanted, never fewer than the
	// pods that hold conversations.
	replicas int32
	// drain and undrain are the pods to mark and to unmark; drained is
	// every pod that drains once they are.
	drain, undrain []string
	drained        map[string]bool
}

// planScale plans an Agent with a template: the pods it wants are its
// autoscaling need (for the conversations its pods hold and the waiting
// ones) or spec.replicas (1 by default).
func planScale(agent *tetherv1alpha1.Agent, workers []workerPod, loads map[string]int32, waiting int32) scalePlan {
	if agent.Spec.Template == nil {
		return scalePlan{} // pods you run are yours to drain and remove
	}
	used, loaded := countLoad(workers, loads)
	wanted := int32(1)
	if agent.Spec.Replicas != nil {
		wanted = *agent.Spec.Replicas
	}
	if agent.Spec.Autoscaling != nil {
		wanted = autoscaledNeed(agent, used+waiting)
	}
	plan := scalePlan{replicas: max(wanted, loaded), drained: map[string]bool{}}

	var live []workerPod
	draining := false // a drained pod still holds conversations
	for _, w := range workers {
		if w.pod.DeletionTimestamp != nil {
			continue
		}
		live = append(live, w)
		if isDrained(w.pod) {
			plan.drained[w.pod.Name] = true
			draining = draining || loads[w.pod.Name] > 0
		}
	}
	if wanted >= loaded {
		// No loaded pod has to go: call off the drains of pods that still
		// hold conversations, and of empty ones that are not going either.
		for _, w := range live {
			ours := strings.HasPrefix(w.pod.Annotations[tetherv1alpha1.DrainAnnotation], scaleDownDrain)
			if ours && plan.drained[w.pod.Name] && (loads[w.pod.Name] > 0 || plan.replicas >= int32(len(live))) { //nolint:gosec // pods of one Agent
				plan.undrain = append(plan.undrain, w.pod.Name)
				delete(plan.drained, w.pod.Name)
			}
		}
		return plan
	}
	// Fewer pods wanted than hold conversations. One drain at a time, once
	// the empty pods are gone (a conversation moved onto one would move
	// again), and only if the others have room for all.
	perPod := max(agent.Spec.ConversationsPerPod, 1)
	if draining || int32(len(live)) > loaded || (loaded-1)*perPod < used { //nolint:gosec // pods of one Agent
		return plan
	}
	var candidates []workerPod
	for _, w := range live {
		if !plan.drained[w.pod.Name] && loads[w.pod.Name] > 0 {
			candidates = append(candidates, w)
		}
	}
	if len(candidates) == 0 {
		return plan
	}
	sort.Slice(candidates, func(i, j int) bool {
		a, b := candidates[i].pod, candidates[j].pod
		if loads[a.Name] != loads[b.Name] {
			return loads[a.Name] < loads[b.Name]
		}
		return a.Name < b.Name
	})
	name := candidates[0].pod.Name
	plan.drain = append(plan.drain, name)
	plan.drained[name] = true
	return plan
}

// syncDrains marks and unmarks the pods plan says.
func (r *AgentReconciler) syncDrains(ctx context.Context, agent *tetherv1alpha1.Agent, plan scalePlan) error {
	value := fmt.Sprintf("%q", scaleDownDrain+r.Clock.Now().UTC().Format(time.RFC3339))
	for _, names := range []struct {
		pods  []string
		value string
	}{{plan.drain, value}, {plan.undrain, "null"}} {
		for _, name := range names.pods {
			if err := r.annotateDrain(ctx, agent.Namespace, name, names.value); err != nil {
				return err
			}
		}
	}
	return nil
}

// annotateDrain sets a pod's drain annotation to value, a JSON string, or
// removes it (null). A pod that is gone needs neither.
func (r *AgentReconciler) annotateDrain(ctx context.Context, namespace, name, value string) error {
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%s}}}`, tetherv1alpha1.DrainAnnotation, value)
	pod := &corev1.Pod{}
	pod.Namespace, pod.Name = namespace, name
	if err := r.Patch(ctx, pod, client.RawPatch("application/merge-patch+json", patch)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("marking pod %s drained (%s): %w", name, value, err)
	}
	return nil
}
