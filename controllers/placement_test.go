package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// loadsByPod counts placed conversations per owner pod.
func loadsByPod(t *testing.T, ns string) map[string]int {
	t.Helper()
	var list tetherv1alpha1.ConversationList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	loads := map[string]int{}
	for _, c := range list.Items {
		if c.Status.Owner != nil {
			loads[c.Status.Owner.Name]++
		}
	}
	return loads
}

func TestPlacementSpreadsEvenly(t *testing.T) {
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "chat", 100)
	for i := range 5 {
		startPod(t, ns, "chat", fmt.Sprintf("chat-%d", i), fmt.Sprintf("127.0.1.%d", i+1), 300)
	}
	// Let the cache see the pods before the burst, as a running system would.
	time.Sleep(200 * time.Millisecond)
	for i := range 100 {
		newConversation(t, ns, fmt.Sprintf("c-%03d", i), "chat")
	}
	eventually(t, 20*time.Second, "all 100 placed", func() (bool, string) {
		loads := loadsByPod(t, ns)
		total := 0
		for _, n := range loads {
			total += n
		}
		return total == 100, fmt.Sprint(loads)
	})
	loads := loadsByPod(t, ns)
	lo, hi := 100, 0
	for i := range 5 {
		n := loads[fmt.Sprintf("chat-%d", i)]
		lo, hi = min(lo, n), max(hi, n)
	}
	t.Logf("loads: %v", loads)
	if hi-lo > 1 {
		t.Errorf("loads %v are not within one of even (min %d, max %d)", loads, lo, hi)
	}
}

func TestPlacementRespectsCapacityAndWaitsForIt(t *testing.T) {
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "tight", 3)
	startPod(t, ns, "tight", "tight-a", "127.0.2.1", 300)
	startPod(t, ns, "tight", "tight-b", "127.0.2.2", 300)
	var convs []*tetherv1alpha1.Conversation
	for i := range 8 {
		convs = append(convs, newConversation(t, ns, fmt.Sprintf("c-%d", i), "tight"))
	}
	waiting := func() []*tetherv1alpha1.Conversation {
		var out []*tetherv1alpha1.Conversation
		for _, c := range convs {
			if got := getConversation(t, c); got.Status.Owner == nil {
				out = append(out, got)
			}
		}
		return out
	}
	eventually(t, 10*time.Second, "6 placed and 2 waiting for capacity", func() (bool, string) {
		w := waiting()
		if len(w) != 2 {
			return false, fmt.Sprintf("%d waiting", len(w))
		}
		for _, c := range w {
			cond := meta.FindStatusCondition(c.Status.Conditions, string(tetherv1alpha1.ConditionScheduled))
			if c.Status.Phase != tetherv1alpha1.PhasePending || cond == nil || cond.Reason != string(tetherv1alpha1.ReasonNoCapacity) {
				return false, fmt.Sprintf("%s: %+v", c.Name, c.Status)
			}
		}
		return true, ""
	})
	for pod, n := range loadsByPod(t, ns) {
		if n > 3 {
			t.Errorf("pod %s holds %d conversations, over its capacity of 3", pod, n)
		}
	}
	msg := meta.FindStatusCondition(waiting()[0].Status.Conditions, string(tetherv1alpha1.ConditionScheduled)).Message
	if !strings.Contains(msg, "capacity") {
		t.Errorf("NoCapacity message %q does not say why", msg)
	}

	// A third pod that becomes ready (and whose runtime takes its Lease) takes
	// the two waiting conversations, driven by the watch, without polling.
	w := createPod(t, ns, "tight", "tight-c", "127.0.2.3")
	setPodReady(t, w.pod, true)
	createLease(t, w.pod, 300)
	eventually(t, 10*time.Second, "the waiting conversations placed on the new pod", func() (bool, string) {
		loads := loadsByPod(t, ns)
		return len(waiting()) == 0 && loads["tight-c"] == 2, fmt.Sprint(loads)
	})
}

func TestPodWithoutLeaseIsNotUsed(t *testing.T) {
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "nolease", 10)
	w := createPod(t, ns, "nolease", "nolease-a", "127.0.3.1")
	setPodReady(t, w.pod, true)
	conv := newConversation(t, ns, "c", "nolease")
	eventually(t, 10*time.Second, "a NoCapacity condition naming the missing Lease", func() (bool, string) {
		got := getConversation(t, conv)
		cond := meta.FindStatusCondition(got.Status.Conditions, string(tetherv1alpha1.ConditionScheduled))
		return cond != nil && cond.Reason == string(tetherv1alpha1.ReasonNoCapacity) && strings.Contains(cond.Message, "no Lease held by the runtime"),
			fmt.Sprintf("%+v", got.Status.Conditions)
	})
	if got := getConversation(t, conv); got.Status.Owner != nil {
		t.Fatalf("placed on %s, a pod without a Lease", got.Status.Owner.Name)
	}
	createLease(t, w.pod, 300)
	if got := waitOwned(t, conv); got.Status.Owner.Name != "nolease-a" || got.Status.Owner.IP != "127.0.3.1" || got.Status.Owner.Port != 7070 {
		t.Fatalf("owner %+v", got.Status.Owner)
	}
}

func TestUnknownAgent(t *testing.T) {
	ns := newNamespace(t)
	conv := newConversation(t, ns, "orphan", "missing")
	eventually(t, 10*time.Second, "an AgentNotFound condition", func() (bool, string) {
		got := getConversation(t, conv)
		cond := meta.FindStatusCondition(got.Status.Conditions, string(tetherv1alpha1.ConditionScheduled))
		return got.Status.Phase == tetherv1alpha1.PhasePending && cond != nil && cond.Status == metav1.ConditionFalse &&
			cond.Reason == string(tetherv1alpha1.ReasonAgentNotFound) && strings.Contains(cond.Message, `Agent "missing" does not exist`) &&
			cond.ObservedGeneration == got.Generation, fmt.Sprintf("%+v", got.Status)
	})
	// Creating the Agent and a pod places it.
	newSelectorAgent(t, ns, "missing", 10)
	startPod(t, ns, "missing", "missing-a", "127.0.3.2", 300)
	waitOwned(t, conv)
}
