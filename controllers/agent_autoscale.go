package controllers

import (
	"math"
	"strconv"
	"strings"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// autoscaledNeed is the pods an Agent with spec.autoscaling needs: enough
// slots for used conversations (held, or waiting for a slot) plus the free slots it
// keeps (a number, or a share of all slots), within min and max. Its
// Deployment never has fewer than the pods that hold conversations
// (planScale): scaling down removes empty pods (their deletion cost is 0, so
// the ReplicaSet removes them first) and drained ones.
func autoscaledNeed(agent *tetherv1alpha1.Agent, used int32) int32 {
	as := agent.Spec.Autoscaling
	perPod := float64(max(agent.Spec.ConversationsPerPod, 1))
	var pods float64
	if pct, ok := strings.CutSuffix(as.FreeSlots.String(), "%"); ok {
		share, _ := strconv.Atoi(pct) // validated: 0 to 99
		pods = math.Ceil(float64(used) / (1 - float64(min(share, 99))/100) / perPod)
	} else {
		pods = math.Ceil(float64(used+max(as.FreeSlots.IntVal, 0)) / perPod)
	}
	return min(max(int32(min(pods, math.MaxInt32)), as.MinReplicas), as.MaxReplicas)
}

// countLoad sums the conversations the live (not terminating) pods hold and
// counts the pods that hold any.
func countLoad(workers []workerPod, loads map[string]int32) (used, loaded int32) {
	for _, w := range workers {
		if w.pod.DeletionTimestamp != nil {
			continue
		}
		if n := loads[w.pod.Name]; n > 0 {
			used += n
			loaded++
		}
	}
	return used, loaded
}
