package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/controllers"
)

// TestAgentStatusPacedUnderABurst: a burst of placements writes the Agent's
// status about once an interval, not once a placement, and the last counts
// are written.
func TestAgentStatusPacedUnderABurst(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	agent := newSelectorAgent(t, ns, "burst", 100)
	startPod(t, ns, "burst", "burst-0", "127.0.8.1", 3600)
	startPod(t, ns, "burst", "burst-1", "127.0.8.2", 3600)
	eventually(t, 10*time.Second, "the Agent ready", func() (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(agent), agent); err != nil {
			return false, err.Error()
		}
		return agent.Status.ReadyReplicas == 2, fmt.Sprintf("%d ready", agent.Status.ReadyReplicas)
	})
	path := fmt.Sprintf("/apis/tether.dev/v1alpha1/namespaces/%s/agents/burst/status", ns)
	before, began := writesToPath(path), time.Now()
	const n = 80
	forEach(t, n, func(i int) error {
		return k8s.Create(ctx, newFleetConversation(ns, fmt.Sprintf("burst-%02d", i), "burst"))
	})
	eventually(t, 30*time.Second, "the Agent's status counts every conversation", func() (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(agent), agent); err != nil {
			return false, err.Error()
		}
		return agent.Status.Conversations == n && agent.Status.FreeCapacity == 200-n,
			fmt.Sprintf("%d conversations, %d free", agent.Status.Conversations, agent.Status.FreeCapacity)
	})
	took := time.Since(began)
	written := writesToPath(path) - before
	// One write at the start of the burst, then at most one an interval,
	// and the last.
	limit := int64(took/controllers.AgentStatusInterval) + 2
	t.Logf("%d placements in %s wrote the Agent's status %d times (at most %d)", n, took.Round(time.Millisecond), written, limit)
	if written > limit {
		t.Errorf("the Agent's status written %d times in %s, want at most %d", written, took.Round(time.Millisecond), limit)
	}
}
