package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// The pods of an Agent the manager runs are spread over nodes
// (spreadOverNodes), but a spread only acts when a pod is scheduled: a node
// lost for a while has its pods replaced on the others, and when it comes
// back nothing moves them again. The next loss of the node that now holds
// them all takes every pod of the Agent at once, and its conversations wait
// for new pods to start instead of moving to a live one (found by the chaos
// suite: an Agent's two pods on one node, cut off together).
//
// So the manager spreads them again: when one node holds two more of an
// Agent's pods than another node they can run on, the least loaded of them
// is drained (its conversations move at turn boundaries, as for a
// scale-down), then evicted, which honours the Agent's PodDisruptionBudget;
// its ReplicaSet makes a replacement, which the scheduler places by the
// spread. The spread kept is the manager's (a skew of 1), or the template's
// own over kubernetes.io/hostname. It acts only on a settled Agent: every pod ready for
// rebalanceSettle on a node Ready for as long, no other pod drained, no
// conversation waiting for a slot, and at most once per rebalanceEvery (a
// replacement the scheduler put back on the crowded node, for want of room
// elsewhere, does not start a loop). A rebalance drain that has not emptied
// its pod within rebalanceDrainLimit, or while conversations wait for room,
// is called off.

// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/eviction,verbs=create

const (
	// rebalanceDrain begins the value of the drains a rebalance makes.
	rebalanceDrain = "rebalance since "
	// rebalanceSettle is how long every pod of the Agent and the node it
	// would move to must have been ready.
	rebalanceSettle = 30 * time.Second
	// rebalanceEvery bounds how often one Agent is rebalanced.
	rebalanceEvery = 5 * time.Minute
	// rebalanceDrainLimit bounds how long a rebalance drain may take.
	rebalanceDrainLimit = 5 * time.Minute
)

// rebalanceStep is what a rebalance does next to an Agent's pods.
type rebalanceStep struct {
	// drain, undrain and evict name a pod, or are empty.
	drain, undrain, evict string
	// why says what the step is for, for the log.
	why string
	// recheck is when to look again, if nothing else happens meanwhile
	// (a node or a pod settling); 0 for never.
	recheck time.Duration
}

// planRebalance decides the next step of spreading an Agent's pods over the
// nodes they can run on. nodes are the cluster's nodes; last is when this
// Agent's last rebalance began (zero if never).
func planRebalance(agent *tetherv1alpha1.Agent, workers []workerPod, loads map[string]int32, waiting int32,
	nodes []corev1.Node, now, last time.Time,
) rebalanceStep {
	if agent.Spec.Template == nil {
		return rebalanceStep{} // pods you run are yours
	}
	var live []*corev1.Pod
	for _, w := range workers {
		if w.pod.DeletionTimestamp == nil {
			live = append(live, w.pod)
		}
	}
	maxSkew, ok := hostSpread(&agent.Spec.Template.Spec, live)
	if !ok {
		return rebalanceStep{} // placed by rules of the template's own
	}
	// A rebalance under way: evict its pod once empty, or call it off.
	for _, pod := range live {
		since, ours := rebalanceDrainedSince(pod)
		switch {
		case !ours:
		case loads[pod.Name] == 0:
			return rebalanceStep{evict: pod.Name, why: "drained for a rebalance and empty"}
		case waiting > 0:
			return rebalanceStep{undrain: pod.Name, why: "conversations wait for a slot"}
		case now.Sub(since) >= rebalanceDrainLimit:
			return rebalanceStep{undrain: pod.Name, why: fmt.Sprintf("not empty after %s", rebalanceDrainLimit)}
		default:
			return rebalanceStep{}
		}
	}
	if waiting > 0 || len(live) < 2 || (!last.IsZero() && now.Sub(last) < rebalanceEvery) {
		return rebalanceStep{}
	}
	// Settled: every pod scheduled, ready for a while and not drained, on
	// a node the Agent's pods can run on.
	eligible := map[string]int{} // pods on each node they can run on
	var recheck time.Duration
	for i := range nodes {
		ok, settleIn := canRunOn(&nodes[i], &agent.Spec.Template.Spec, now)
		if ok {
			eligible[nodes[i].Name] = 0
		} else if settleIn > 0 {
			recheck = max(recheck, settleIn)
		}
	}
	for _, pod := range live {
		ready, since := podReady(pod)
		n, onEligible := eligible[pod.Spec.NodeName]
		if !ready || isDrained(pod) || !onEligible {
			return rebalanceStep{}
		}
		if settleIn := rebalanceSettle - now.Sub(since); settleIn > 0 {
			recheck = max(recheck, settleIn)
		}
		eligible[pod.Spec.NodeName] = n + 1
	}
	if len(eligible) < 2 {
		return rebalanceStep{recheck: recheck}
	}
	crowded, emptiest := "", ""
	for name, n := range eligible {
		if crowded == "" || n > eligible[crowded] || (n == eligible[crowded] && name < crowded) {
			crowded = name
		}
		if emptiest == "" || n < eligible[emptiest] || (n == eligible[emptiest] && name < emptiest) {
			emptiest = name
		}
	}
	if eligible[crowded]-eligible[emptiest] <= maxSkew {
		return rebalanceStep{}
	}
	if recheck > 0 {
		return rebalanceStep{recheck: recheck} // spread out, but not settled yet
	}
	var candidates []*corev1.Pod
	for _, pod := range live {
		if pod.Spec.NodeName == crowded {
			candidates = append(candidates, pod)
		}
	}
	sort.Slice(candidates, func(i, j int) bool {
		a, b := candidates[i], candidates[j]
		if loads[a.Name] != loads[b.Name] {
			return loads[a.Name] < loads[b.Name]
		}
		return a.Name < b.Name
	})
	return rebalanceStep{drain: candidates[0].Name, why: fmt.Sprintf("node %s holds %d of the Agent's pods, node %s %d",
		crowded, eligible[crowded], emptiest, eligible[emptiest])}
}

// placesItsOwnPods reports whether a template says where its pods go, so
// that the manager adds no spread of its own (spreadOverNodes).
func placesItsOwnPods(spec *corev1.PodSpec) bool {
	return len(spec.TopologySpreadConstraints) > 0 || spec.Affinity != nil
}

// hostSpread returns the largest skew of pods over nodes that a template's
// pods keep: 1 with the manager's spread, or the template's own spread over
// kubernetes.io/hostname of these pods. A template with an affinity, or a
// spread over anything else, places its pods by rules the manager does not
// second-guess (ok false).
func hostSpread(spec *corev1.PodSpec, pods []*corev1.Pod) (maxSkew int, ok bool) {
	if spec.Affinity != nil {
		return 0, false
	}
	if len(spec.TopologySpreadConstraints) == 0 {
		return 1, true
	}
	for _, c := range spec.TopologySpreadConstraints {
		sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if c.TopologyKey != corev1.LabelHostname || c.LabelSelector == nil || err != nil {
			return 0, false
		}
		for _, pod := range pods {
			if !sel.Matches(labels.Set(pod.Labels)) {
				return 0, false
			}
		}
		if maxSkew == 0 || int(c.MaxSkew) < maxSkew {
			maxSkew = int(c.MaxSkew)
		}
	}
	return max(maxSkew, 1), true
}

// rebalanceDrainedSince returns when a rebalance drained pod, if one did.
func rebalanceDrainedSince(pod *corev1.Pod) (time.Time, bool) {
	v, ok := pod.Annotations[tetherv1alpha1.DrainAnnotation]
	if !ok || !strings.HasPrefix(v, rebalanceDrain) {
		return time.Time{}, false
	}
	since, err := time.Parse(time.RFC3339, strings.TrimPrefix(v, rebalanceDrain))
	if err != nil {
		return time.Time{}, true // ours, of unknown age: as old as can be
	}
	return since, true
}

// canRunOn reports whether pods of spec can be scheduled on node and it has
// been Ready for rebalanceSettle; if it is Ready but not for that long yet,
// settleIn says how long is left.
func canRunOn(node *corev1.Node, spec *corev1.PodSpec, now time.Time) (ok bool, settleIn time.Duration) {
	if node.Spec.Unschedulable || node.DeletionTimestamp != nil {
		return false, 0
	}
	for k, v := range spec.NodeSelector {
		if node.Labels[k] != v {
			return false, 0
		}
	}
	for i := range node.Spec.Taints {
		taint := &node.Spec.Taints[i]
		if taint.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		tolerated := false
		for j := range spec.Tolerations {
			tolerated = tolerated || spec.Tolerations[j].ToleratesTaint(logr.Discard(), taint, false)
		}
		if !tolerated {
			return false, 0
		}
	}
	for _, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status != corev1.ConditionTrue {
			return false, 0
		}
		if left := rebalanceSettle - now.Sub(c.LastTransitionTime.Time); left > 0 {
			return false, left
		}
		return true, 0
	}
	return false, 0
}

// rebalance takes the next step of spreading an Agent's pods, and returns
// when to look again (0: when something changes).
func (r *AgentReconciler) rebalance(ctx context.Context, agent *tetherv1alpha1.Agent, workers []workerPod, loads map[string]int32, waiting int32) (time.Duration, error) {
	if agent.Spec.Template == nil || agent.Spec.Template.Spec.Affinity != nil {
		return 0, nil
	}
	var nodes corev1.NodeList
	if err := r.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return 0, fmt.Errorf("listing nodes: %w", err)
	}
	key := client.ObjectKeyFromObject(agent)
	now := r.Clock.Now()
	r.rebalanceMu.Lock()
	last := r.rebalanced[key]
	r.rebalanceMu.Unlock()
	step := planRebalance(agent, workers, loads, waiting, nodes.Items, now, last)
	log := ctrl.LoggerFrom(ctx)
	switch {
	case step.drain != "":
		log.Info("rebalancing the Agent's pods over nodes: draining one", "pod", step.drain, "why", step.why)
		r.rebalanceMu.Lock()
		r.rebalanced[key] = now
		r.rebalanceMu.Unlock()
		value := fmt.Sprintf("%q", rebalanceDrain+now.UTC().Format(time.RFC3339))
		return 0, r.annotateDrain(ctx, agent.Namespace, step.drain, value)
	case step.undrain != "":
		log.Info("calling off a rebalance", "pod", step.undrain, "why", step.why)
		return 0, r.annotateDrain(ctx, agent.Namespace, step.undrain, "null")
	case step.evict != "":
		log.Info("rebalancing the Agent's pods over nodes: evicting a drained pod", "pod", step.evict)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: agent.Namespace, Name: step.evict}}
		err := r.SubResource("eviction").Create(ctx, pod, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: agent.Namespace, Name: step.evict}})
		switch {
		case apierrors.IsTooManyRequests(err):
			// The disruption budget does not allow it now: try again.
			return rebalanceRetry, nil
		case apierrors.IsNotFound(err):
			return 0, nil
		case err != nil:
			return 0, fmt.Errorf("evicting pod %s to rebalance: %w", step.evict, err)
		}
		return 0, nil
	}
	return step.recheck, nil
}

// rebalanceRetry is how long an eviction the disruption budget refused
// waits before it is tried again.
const rebalanceRetry = 5 * time.Second

// forgetRebalance drops what the reconciler remembers of a deleted Agent.
func (r *AgentReconciler) forgetRebalance(key client.ObjectKey) {
	r.rebalanceMu.Lock()
	defer r.rebalanceMu.Unlock()
	delete(r.rebalanced, key)
}
