package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/fencing"
	"tether.dev/tether/internal/testing/await"
)

// claimAwaiting does what the owner runtime does when its agent asks a human:
// under its epoch, phase AwaitingInput with the prompt.
func claimAwaiting(t *testing.T, conv *tetherv1alpha1.Conversation, askedAt time.Time) *tetherv1alpha1.Conversation {
	t.Helper()
	owned := waitOwned(t, conv)
	holder := fencing.Holder{Pod: owned.Status.Owner.Name, Epoch: owned.Status.Lease.Epoch}
	got, err := fencing.UpdateStatus(context.Background(), k8s, k8s.Status(), client.ObjectKeyFromObject(conv), holder,
		func(c *tetherv1alpha1.Conversation) error {
			s := &c.Status
			s.Phase = tetherv1alpha1.PhaseAwaitingInput
			s.Prompt = &tetherv1alpha1.Prompt{ID: "approve-1", Text: "Approve the refund?", Options: []string{"approve", "reject"}, AskedAt: metav1.NewTime(askedAt), Sequence: 3}
			s.LastSequence = 3
			return nil
		})
	if err != nil {
		t.Fatalf("claiming as the owner: %v", err)
	}
	return got
}

// events returns the notes of the events regarding conv with reason.
func events(t *testing.T, conv *tetherv1alpha1.Conversation, reason string) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(conv.Namespace)); err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, e := range list.Items {
		if e.Regarding.Name == conv.Name && e.Reason == reason {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

func TestOwnerPodDeletedReschedules(t *testing.T) {
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "approvals", 10)
	a := startPod(t, ns, "approvals", "approvals-a", "127.0.4.1", 300)
	conv := newConversation(t, ns, "refund", "approvals")
	before := claimAwaiting(t, conv, time.Now())
	if before.Status.Owner.Name != "approvals-a" {
		t.Fatalf("placed on %s", before.Status.Owner.Name)
	}
	startPod(t, ns, "approvals", "approvals-b", "127.0.4.2", 300)

	if err := k8s.Delete(context.Background(), a.pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	var after *tetherv1alpha1.Conversation
	eventually(t, 10*time.Second, "rescheduled to approvals-b", func() (bool, string) {
		after = getConversation(t, conv)
		return after.Status.Owner != nil && after.Status.Owner.Name == "approvals-b", fmt.Sprintf("%+v", after.Status)
	})
	if after.Status.Phase != tetherv1alpha1.PhaseRescheduling {
		t.Errorf("phase %s, want Rescheduling until the new owner claims it", after.Status.Phase)
	}
	if epochOf(after) <= epochOf(before) {
		t.Errorf("epoch %d after the move, %d before: it must grow", epochOf(after), epochOf(before))
	}
	if after.Status.RescheduleCount != 1 {
		t.Errorf("rescheduleCount %d, want 1", after.Status.RescheduleCount)
	}
	if after.Status.Prompt == nil || after.Status.Prompt.ID != "approve-1" || after.Status.Prompt.Text != before.Status.Prompt.Text {
		t.Errorf("prompt %+v not kept across the move", after.Status.Prompt)
	}
	eventually(t, 5*time.Second, "a Rescheduled event naming both pods", func() (bool, string) {
		notes := events(t, conv, "Rescheduled")
		for _, n := range notes {
			if strings.Contains(n, "from pod approvals-a to pod approvals-b") && strings.Contains(n, string(tetherv1alpha1.ReasonOwnerPodDeleted)) {
				return true, ""
			}
		}
		return false, fmt.Sprint(notes)
	})

	// The old owner, waking up with its old epoch, can write nothing.
	_, err := fencing.UpdateStatus(context.Background(), k8s, k8s.Status(), client.ObjectKeyFromObject(conv),
		fencing.Holder{Pod: "approvals-a", Epoch: epochOf(before)},
		func(c *tetherv1alpha1.Conversation) error {
			s := &c.Status
			s.Prompt = nil
			s.Phase = tetherv1alpha1.PhaseRunning
			return nil
		})
	if !errors.Is(err, fencing.ErrFenced) {
		t.Fatalf("stale owner's write: %v, want ErrFenced", err)
	}
	if got := getConversation(t, conv); got.Status.Prompt == nil {
		t.Fatal("the stale owner's write landed")
	}
}

func TestOwnerLeaseExpiryReschedulesAfterExpiryNotBefore(t *testing.T) {
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "frozen", 10)
	a := startPod(t, ns, "frozen", "frozen-a", "127.0.5.1", 2)
	conv := newConversation(t, ns, "c", "frozen")
	owned := claimAwaiting(t, conv, time.Now())
	if owned.Status.Owner.Name != "frozen-a" {
		t.Fatalf("placed on %s", owned.Status.Owner.Name)
	}
	// Nobody renews frozen-a's Lease from here on: its runtime is hung.
	expiry := a.lease.Spec.RenewTime.Add(2 * time.Second)
	startPod(t, ns, "frozen", "frozen-b", "127.0.5.2", 300)

	// Until shortly before expiry the conversation does not move.
	await.Stays(t, time.Until(expiry.Add(-300*time.Millisecond)), "owned by frozen-a before its Lease expired", func() bool {
		got := getConversation(t, conv)
		return got.Status.Owner != nil && got.Status.Owner.Name == "frozen-a"
	})
	var after *tetherv1alpha1.Conversation
	eventually(t, 5*time.Second, "rescheduled after the Lease expired", func() (bool, string) {
		after = getConversation(t, conv)
		return after.Status.Owner != nil && after.Status.Owner.Name == "frozen-b", fmt.Sprintf("%+v", after.Status)
	})
	moved := after.Status.Lease.AcquireTime.Time
	if moved.Before(expiry) {
		t.Errorf("moved at %s, before the Lease expired at %s", moved.Format(time.RFC3339Nano), expiry.Format(time.RFC3339Nano))
	}
	t.Logf("Lease expired %s; moved %s later", expiry.Format(time.RFC3339Nano), moved.Sub(expiry))
	// Events are recorded asynchronously.
	eventually(t, 5*time.Second, "a Rescheduled event naming the Lease expiry", func() (bool, string) {
		notes := events(t, conv, "Rescheduled")
		return len(notes) > 0 && strings.Contains(notes[0], string(tetherv1alpha1.ReasonOwnerLeaseExpired)), fmt.Sprint(notes)
	})
}

func TestOwnerLeaseDeletedReschedules(t *testing.T) {
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "released", 10)
	a := startPod(t, ns, "released", "released-a", "127.0.5.3", 300)
	conv := newConversation(t, ns, "c", "released")
	waitOwned(t, conv)
	startPod(t, ns, "released", "released-b", "127.0.5.4", 300)
	// A runtime that shuts down cleanly releases its Lease.
	if err := k8s.Delete(context.Background(), a.lease); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "rescheduled off the pod without a Lease", func() (bool, string) {
		got := getConversation(t, conv)
		cond := meta.FindStatusCondition(got.Status.Conditions, string(tetherv1alpha1.ConditionReady))
		return got.Status.Owner != nil && got.Status.Owner.Name == "released-b" && cond != nil &&
			cond.Reason == string(tetherv1alpha1.ReasonOwnerLeaseMissing), fmt.Sprintf("%+v", got.Status)
	})
}

func TestOwnerNotReadyBeyondGraceReschedules(t *testing.T) {
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "flaky", 10)
	a := startPod(t, ns, "flaky", "flaky-a", "127.0.5.5", 300)
	conv := newConversation(t, ns, "c", "flaky")
	waitOwned(t, conv)
	startPod(t, ns, "flaky", "flaky-b", "127.0.5.6", 300)
	setPodReady(t, a.pod, false)
	var moved *tetherv1alpha1.Conversation
	eventually(t, 10*time.Second, "rescheduled after the not-ready grace", func() (bool, string) {
		moved = getConversation(t, conv)
		return moved.Status.Owner != nil && moved.Status.Owner.Name == "flaky-b", fmt.Sprintf("%+v", moved.Status)
	})
	// The suite runs the controller with a 2 s grace, counted from the Ready
	// condition's transition (which the API keeps to the second).
	notReadySince := a.pod.Status.Conditions[0].LastTransitionTime.Time
	if at := moved.Status.Lease.AcquireTime.Time; at.Before(notReadySince.Add(2 * time.Second)) {
		t.Errorf("moved at %s, within the 2 s grace from %s", at.Format(time.RFC3339Nano), notReadySince.Format(time.RFC3339Nano))
	}
}

func TestStaleWritesAreRejected(t *testing.T) {
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "fenced", 10)
	a := startPod(t, ns, "fenced", "fenced-a", "127.0.6.1", 300)
	conv := newConversation(t, ns, "c", "fenced")
	owned := claimAwaiting(t, conv, time.Now())
	staleView := owned.DeepCopy()
	startPod(t, ns, "fenced", "fenced-b", "127.0.6.2", 300)
	if err := k8s.Delete(context.Background(), a.pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	var moved *tetherv1alpha1.Conversation
	eventually(t, 10*time.Second, "rescheduled", func() (bool, string) {
		moved = getConversation(t, conv)
		return moved.Status.Owner != nil && moved.Status.Owner.Name == "fenced-b", fmt.Sprintf("%+v", moved.Status)
	})

	// A plain update from the old owner's view: the resourceVersion it
	// carries is stale, so the API server refuses it.
	staleView.Status.Phase = tetherv1alpha1.PhaseRunning
	staleView.Status.Prompt = nil
	if err := k8s.Status().Update(context.Background(), staleView); !apierrors.IsConflict(err) {
		t.Fatalf("update from a stale view: %v, want a conflict", err)
	}
	// The fenced helper re-reads and refuses the stale epoch.
	old := fencing.Holder{Pod: "fenced-a", Epoch: epochOf(owned)}
	if _, err := fencing.UpdateStatus(context.Background(), k8s, k8s.Status(), client.ObjectKeyFromObject(conv), old,
		func(c *tetherv1alpha1.Conversation) error { c.Status.LastSequence = 99; return nil }); !errors.Is(err, fencing.ErrFenced) {
		t.Fatalf("fenced helper with a stale epoch: %v, want ErrFenced", err)
	}
	// So does a writer claiming the right epoch from the wrong pod.
	impostor := fencing.Holder{Pod: "fenced-a", Epoch: epochOf(moved)}
	if _, err := fencing.UpdateStatus(context.Background(), k8s, k8s.Status(), client.ObjectKeyFromObject(conv), impostor,
		func(c *tetherv1alpha1.Conversation) error { c.Status.LastSequence = 99; return nil }); !errors.Is(err, fencing.ErrFenced) {
		t.Fatalf("fenced helper from the wrong pod: %v, want ErrFenced", err)
	}
	// The new owner at the current epoch writes.
	current := fencing.Holder{Pod: "fenced-b", Epoch: epochOf(moved)}
	got, err := fencing.UpdateStatus(context.Background(), k8s, k8s.Status(), client.ObjectKeyFromObject(conv), current,
		func(c *tetherv1alpha1.Conversation) error {
			s := &c.Status
			s.Phase = tetherv1alpha1.PhaseAwaitingInput
			s.LastSequence = 4
			return nil
		})
	if err != nil {
		t.Fatalf("current owner's write: %v", err)
	}
	if got.Status.LastSequence != 4 || got.Status.Prompt == nil {
		t.Fatalf("status after the owner's write: %+v", got.Status)
	}
}

func TestAgentDeletedWhileConversationsRun(t *testing.T) {
	ns := newNamespace(t)
	agent := newSelectorAgent(t, ns, "doomed", 10)
	a := startPod(t, ns, "doomed", "doomed-a", "127.0.6.3", 300)
	conv := newConversation(t, ns, "c", "doomed")
	claimAwaiting(t, conv, time.Now())
	if err := k8s.Delete(context.Background(), agent); err != nil {
		t.Fatal(err)
	}
	// While its pod is healthy the conversation stays where it is.
	await.Stays(t, 500*time.Millisecond, "a healthy conversation undisturbed by its Agent's deletion", func() bool {
		got := getConversation(t, conv)
		return got.Status.Owner != nil && got.Status.Phase == tetherv1alpha1.PhaseAwaitingInput
	})
	// When the pod goes, there is nowhere to move it: Rescheduling, saying why.
	if err := k8s.Delete(context.Background(), a.pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Rescheduling with AgentNotFound", func() (bool, string) {
		got := getConversation(t, conv)
		cond := meta.FindStatusCondition(got.Status.Conditions, string(tetherv1alpha1.ConditionScheduled))
		return got.Status.Phase == tetherv1alpha1.PhaseRescheduling && got.Status.Owner == nil && got.Status.Prompt != nil &&
			cond != nil && cond.Reason == string(tetherv1alpha1.ReasonAgentNotFound), fmt.Sprintf("%+v", got.Status)
	})
}
