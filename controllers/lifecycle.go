package controllers

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// idleSuspendAt returns when a conversation awaiting input is to be suspended:
// its own idleSuspendSeconds, else its Agent's, counted from its last
// activity: the later of when the prompt was asked and status.lastActiveTime
// (the last client leaving, a wake). False when it is not awaiting input, a
// client is attached, or no policy applies.
func idleSuspendAt(conv *tetherv1alpha1.Conversation, agent *tetherv1alpha1.Agent) (time.Time, bool) {
	if conv.Status.Phase != tetherv1alpha1.PhaseAwaitingInput || conv.Status.Prompt == nil || conv.Status.Attached {
		return time.Time{}, false
	}
	seconds := conv.Spec.IdleSuspendSeconds
	if seconds == nil && agent != nil {
		seconds = agent.Spec.IdleSuspendSeconds
	}
	if seconds == nil {
		return time.Time{}, false
	}
	return idleSince(conv).Add(time.Duration(*seconds) * time.Second), true
}

// idleSince is the last activity of a conversation awaiting input.
func idleSince(conv *tetherv1alpha1.Conversation) time.Time {
	var since time.Time
	if conv.Status.Prompt != nil {
		since = conv.Status.Prompt.AskedAt.Time
	}
	if last := conv.Status.LastActiveTime; last != nil && last.After(since) {
		since = last.Time
	}
	return since
}

// deleteAt returns when a finished conversation is to be deleted. The TTL
// counts from completionTime, which the runtime sets; an object without it
// (written by an older or foreign runtime) counts from its Ready condition's
// last transition, else from its creation.
func deleteAt(conv *tetherv1alpha1.Conversation) (time.Time, bool) {
	if !conv.Status.Phase.IsFinished() || conv.Spec.TTLSecondsAfterFinished == nil {
		return time.Time{}, false
	}
	finished := conv.CreationTimestamp.Time
	if ready := meta.FindStatusCondition(conv.Status.Conditions, string(tetherv1alpha1.ConditionReady)); ready != nil {
		finished = ready.LastTransitionTime.Time
	}
	if conv.Status.CompletionTime != nil {
		finished = conv.Status.CompletionTime.Time
	}
	return finished.Add(time.Duration(*conv.Spec.TTLSecondsAfterFinished) * time.Second), true
}

// holdsSlot reports whether a conversation counts against its owner pod's
// capacity.
func holdsSlot(conv *tetherv1alpha1.Conversation) bool {
	return conv.Status.Owner != nil && !conv.Status.Phase.IsFinished()
}

// needsPlacement reports whether a conversation waits for an owner.
func needsPlacement(conv *tetherv1alpha1.Conversation) bool {
	if conv.Status.Owner != nil {
		return false
	}
	switch conv.Status.Phase {
	case "", tetherv1alpha1.PhasePending, tetherv1alpha1.PhaseRescheduling:
		return true
	}
	return false
}
