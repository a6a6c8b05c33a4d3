package controllers

import (
	"math"
	"strconv"
	"strings"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// autoscaledReplicas is the pods an Agent with spec.autoscaling needs (nil
// without it): enough slots for the conversations its pods hold plus the
// free slots it keeps (a number, or a share of all slots), within min and
// max, and never fewer than the pods that hold conversations, so that
// scaling down only ever removes empty pods (their deletion cost is 0, so
// the ReplicaSet removes them first).
func autoscaledReplicas(agent *tetherv1alpha1.Agent, workers []workerPod, loads map[string]int32) *int32 {
	as := agent.Spec.Autoscaling
	if as == nil || agent.Spec.Template == nil {
		return nil
	}
	perPod := float64(max(agent.Spec.ConversationsPerPod, 1))
	var used, loaded int32
	for _, w := range workers {
		if w.pod.DeletionTimestamp != nil {
			continue
		}
		if n := loads[w.pod.Name]; n > 0 {
			used += n
			loaded++
		}
	}
	var pods float64
	if pct, ok := strings.CutSuffix(as.FreeSlots.String(), "%"); ok {
		share, _ := strconv.Atoi(pct) // validated: 0 to 99
		pods = math.Ceil(float64(used) / (1 - float64(min(share, 99))/100) / perPod)
	} else {
		pods = math.Ceil(float64(used+max(as.FreeSlots.IntVal, 0)) / perPod)
	}
	n := max(int32(min(pods, math.MaxInt32)), loaded, as.MinReplicas)
	n = min(n, max(as.MaxReplicas, loaded))
	return &n
}
