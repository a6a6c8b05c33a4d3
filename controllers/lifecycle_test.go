package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/fencing"
	"tether.dev/tether/internal/testing/await"
)

func TestIdleSuspendThenWake(t *testing.T) {
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "idle", 1, func(a *tetherv1alpha1.Agent) { a.Spec.IdleSuspendSeconds = ptr.To[int32](3600) })
	startPod(t, ns, "idle", "idle-a", "127.0.7.1", 300)

	// Asked an hour and a minute ago: past the Agent's hour of idleness.
	conv := newConversation(t, ns, "sleepy", "idle")
	before := claimAwaiting(t, conv, time.Now().Add(-61*time.Minute))
	var suspended *tetherv1alpha1.Conversation
	eventually(t, 10*time.Second, "suspended", func() (bool, string) {
		suspended = getConversation(t, conv)
		return suspended.Status.Phase == tetherv1alpha1.PhaseSuspended, fmt.Sprintf("%+v", suspended.Status)
	})
	if suspended.Status.Owner != nil || suspended.Status.Lease.Holder != "" {
		t.Errorf("a suspended conversation still has an owner: %+v", suspended.Status)
	}
	if epochOf(suspended) <= epochOf(before) {
		t.Errorf("suspending did not move the epoch on (%d -> %d)", epochOf(before), epochOf(suspended))
	}
	if suspended.Status.Prompt == nil || suspended.Status.Prompt.ID != before.Status.Prompt.ID {
		t.Errorf("prompt not kept while suspended: %+v", suspended.Status.Prompt)
	}
	// Its slot is free: the pod (capacity 1) takes another conversation.
	other := newConversation(t, ns, "next", "idle")
	waitOwned(t, other)

	// A wake request makes it Pending and places it again once a slot frees.
	patch := client.MergeFrom(suspended.DeepCopy())
	suspended.Annotations = map[string]string{tetherv1alpha1.WakeAnnotation: time.Now().UTC().Format(time.RFC3339)}
	if err := k8s.Patch(context.Background(), suspended, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "woken to Pending, annotation removed", func() (bool, string) {
		got := getConversation(t, conv)
		_, still := got.Annotations[tetherv1alpha1.WakeAnnotation]
		return got.Status.Phase == tetherv1alpha1.PhasePending && !still, fmt.Sprintf("%+v %v", got.Status, got.Annotations)
	})
	startPod(t, ns, "idle", "idle-b", "127.0.7.2", 300)
	woken := waitOwned(t, conv)
	if woken.Status.Prompt == nil || woken.Status.Prompt.ID != before.Status.Prompt.ID {
		t.Errorf("prompt lost on wake: %+v", woken.Status.Prompt)
	}
	// Events are recorded asynchronously.
	eventually(t, 5*time.Second, "Suspended and Woken events", func() (bool, string) {
		woken, suspended := events(t, conv, "Woken"), events(t, conv, "Suspended")
		return len(woken) > 0 && len(suspended) > 0, fmt.Sprint(woken, suspended)
	})
}

func TestConversationOverridesIdleSuspend(t *testing.T) {
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "patient", 10, func(a *tetherv1alpha1.Agent) { a.Spec.IdleSuspendSeconds = ptr.To[int32](60) })
	startPod(t, ns, "patient", "patient-a", "127.0.7.3", 300)
	conv := newConversation(t, ns, "long", "patient", func(c *tetherv1alpha1.Conversation) {
		c.Spec.IdleSuspendSeconds = ptr.To[int32](7200)
	})
	// Idle for 10 minutes: past the Agent's minute, within its own 2 hours.
	claimAwaiting(t, conv, time.Now().Add(-10*time.Minute))
	await.Stays(t, time.Second, "AwaitingInput (the Conversation's own idle time honoured)", func() bool {
		return getConversation(t, conv).Status.Phase == tetherv1alpha1.PhaseAwaitingInput
	})
}

func TestFinishedConversationDeletedAfterTTL(t *testing.T) {
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "done", 10)
	startPod(t, ns, "done", "done-a", "127.0.7.4", 300)
	finish := func(conv *tetherv1alpha1.Conversation, completed time.Time) {
		owned := waitOwned(t, conv)
		holder := fencing.Holder{Pod: owned.Status.Owner.Name, Epoch: owned.Status.Lease.Epoch}
		if _, err := fencing.UpdateStatus(context.Background(), k8s, k8s.Status(), client.ObjectKeyFromObject(conv), holder,
			func(c *tetherv1alpha1.Conversation) error {
				s := &c.Status
				s.Phase = tetherv1alpha1.PhaseSucceeded
				s.CompletionTime = ptr.To(metav1.NewTime(completed))
				return nil
			}); err != nil {
			t.Fatal(err)
		}
	}
	expired := newConversation(t, ns, "expired", "done", func(c *tetherv1alpha1.Conversation) { c.Spec.TTLSecondsAfterFinished = ptr.To[int32](60) })
	soon := newConversation(t, ns, "soon", "done", func(c *tetherv1alpha1.Conversation) { c.Spec.TTLSecondsAfterFinished = ptr.To[int32](2) })
	kept := newConversation(t, ns, "kept", "done")
	finish(expired, time.Now().Add(-2*time.Minute))
	finish(soon, time.Now())
	finish(kept, time.Now().Add(-24*time.Hour))

	gone := func(conv *tetherv1alpha1.Conversation) func() (bool, string) {
		return func() (bool, string) {
			err := k8s.Get(context.Background(), client.ObjectKeyFromObject(conv), &tetherv1alpha1.Conversation{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		}
	}
	eventually(t, 5*time.Second, "the expired conversation deleted", gone(expired))
	if ok, _ := gone(soon)(); ok {
		t.Fatal("deleted before its 2 s TTL ran out")
	}
	eventually(t, 5*time.Second, "deleted when its TTL ran out", gone(soon))
	if ok, _ := gone(kept)(); ok {
		t.Fatal("a conversation without a TTL was deleted")
	}
}
