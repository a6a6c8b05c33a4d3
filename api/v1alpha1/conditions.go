package v1alpha1

// ConditionType is the type of a condition Tether writes. Every condition
// Tether writes carries the observedGeneration of the object it describes.
type ConditionType string

// ConditionReason is the reason of a condition Tether writes, and of the
// Event that may go with it.
type ConditionReason string

// EventReason is the reason of an Event Tether records that no condition
// carries.
type EventReason string

// Condition types.
const (
	// ConditionScheduled on a Conversation: placed on a worker pod.
	ConditionScheduled ConditionType = "Scheduled"
	// ConditionReady on a Conversation: claimed by its owner and serving. On
	// an Agent: at least one ready pod with free capacity.
	ConditionReady ConditionType = "Ready"
	// ConditionReplayDiverged on a Conversation: a turn run again after a
	// move did not repeat what it had recorded (the agent is not
	// deterministic, or was changed); the message says where.
	ConditionReplayDiverged ConditionType = "ReplayDiverged"
)

// Condition reasons, one per cause a person may need to act on.
const (
	// ReasonPlaced means the conversation was assigned to a pod.
	ReasonPlaced ConditionReason = "Placed"
	// ReasonNoCapacity means no ready pod of the Agent with a live Lease has a
	// free slot; placement happens as soon as one does.
	ReasonNoCapacity ConditionReason = "NoCapacity"
	// ReasonAgentNotFound means the referenced Agent does not exist (or was
	// deleted while the conversation ran).
	ReasonAgentNotFound ConditionReason = "AgentNotFound"
	// ReasonOwnerPodDeleted means the owner pod was deleted or is terminating.
	ReasonOwnerPodDeleted ConditionReason = "OwnerPodDeleted"
	// ReasonOwnerPodFailed means the owner pod failed or stayed not ready beyond
	// the grace period.
	ReasonOwnerPodFailed ConditionReason = "OwnerPodFailed"
	// ReasonOwnerDraining means the owner pod is drained (tether.dev/drain)
	// and the conversation moved off it at a turn boundary.
	ReasonOwnerDraining ConditionReason = "OwnerDraining"
	// ReasonOwnerLeaseExpired means the owner pod's Lease was not renewed in time
	// (hung runtime, partition, lost node).
	ReasonOwnerLeaseExpired ConditionReason = "OwnerLeaseExpired"
	// ReasonOwnerLeaseMissing means the owner pod has no Lease.
	ReasonOwnerLeaseMissing ConditionReason = "OwnerLeaseMissing"
	// ReasonIdle means suspended after awaiting input longer than allowed.
	ReasonIdle ConditionReason = "Idle"
	// ReasonWakeRequested means a client or user asked to wake the conversation.
	ReasonWakeRequested ConditionReason = "WakeRequested"
	// ReasonClaimed means the owner runtime restored the conversation and serves it.
	ReasonClaimed ConditionReason = "Claimed"
	// ReasonCompleted means the agent finished the conversation.
	ReasonCompleted ConditionReason = "Completed"
	// ReasonAgentFailed means the agent failed the conversation.
	ReasonAgentFailed ConditionReason = "AgentFailed"
	// ReasonFlapping means a conversation changed owner more than a few
	// times a minute; suspension is held off until it settles.
	ReasonFlapping ConditionReason = "Flapping"
	// ReasonReplayDiverged means a replayed turn asked, sent or ran
	// something other than what was recorded; it went on live from there.
	ReasonReplayDiverged ConditionReason = "ReplayDiverged"
	// ReasonEventLogHole means a read of the conversation's event log found
	// an event its index names missing: the history is incomplete.
	ReasonEventLogHole ConditionReason = "EventLogHole"
	// ReasonPodsReady means an Agent has ready pods with free capacity.
	ReasonPodsReady ConditionReason = "PodsReady"
	// ReasonNoReadyPods means an Agent has no ready pod with a live Lease.
	ReasonNoReadyPods ConditionReason = "NoReadyPods"
	// ReasonDeploymentFailed means the Agent's Deployment could not be
	// created or updated; the message says why.
	ReasonDeploymentFailed ConditionReason = "DeploymentFailed"
	// ReasonFull means an Agent's ready pods have no free slot.
	ReasonFull ConditionReason = "Full"
)

// Event reasons of what happens to a conversation that no condition says.
const (
	// EventRescheduled: the owner was lost and the conversation moves.
	EventRescheduled EventReason = "Rescheduled"
	// EventMoved: moved off a drained pod at a turn boundary.
	EventMoved EventReason = "Moved"
	// EventSuspended: idle, its pod slot released.
	EventSuspended EventReason = "Suspended"
	// EventWoken: a wake was asked for.
	EventWoken EventReason = "Woken"
	// EventPlaced: placed on a pod.
	EventPlaced EventReason = "Placed"
	// EventDeleted: deleted when its TTL after finishing ran out.
	EventDeleted EventReason = "Deleted"
	// EventLogNotDeleted: its event log could not be deleted (yet).
	EventLogNotDeleted EventReason = "LogNotDeleted"
)
