package v1alpha1

// Condition types. Every condition Tether writes carries the
// observedGeneration of the object it describes.
const (
	// ConditionScheduled on a Conversation: placed on a worker pod.
	ConditionScheduled = "Scheduled"
	// ConditionReady on a Conversation: claimed by its owner and serving. On
	// an Agent: at least one ready pod with free capacity.
	ConditionReady = "Ready"
	// ConditionReplayDiverged on a Conversation: a turn run again after a
	// move did not repeat what it had recorded (the agent is not
	// deterministic, or was changed); the message says where.
	ConditionReplayDiverged = "ReplayDiverged"
)

// Condition reasons, one per cause a person may need to act on.
const (
	// ReasonPlaced means the conversation was assigned to a pod.
	ReasonPlaced = "Placed"
	// ReasonNoCapacity means no ready pod of the Agent with a live Lease has a
	// free slot; placement happens as soon as one does.
	ReasonNoCapacity = "NoCapacity"
	// ReasonAgentNotFound means the referenced Agent does not exist (or was
	// deleted while the conversation ran).
	ReasonAgentNotFound = "AgentNotFound"
	// ReasonOwnerPodDeleted means the owner pod was deleted or is terminating.
	ReasonOwnerPodDeleted = "OwnerPodDeleted"
	// ReasonOwnerPodFailed means the owner pod failed or stayed not ready beyond
	// the grace period.
	ReasonOwnerPodFailed = "OwnerPodFailed"
	// ReasonOwnerLeaseExpired means the owner pod's Lease was not renewed in time
	// (hung runtime, partition, lost node).
	ReasonOwnerLeaseExpired = "OwnerLeaseExpired"
	// ReasonOwnerLeaseMissing means the owner pod has no Lease.
	ReasonOwnerLeaseMissing = "OwnerLeaseMissing"
	// ReasonIdle means suspended after awaiting input longer than allowed.
	ReasonIdle = "Idle"
	// ReasonWakeRequested means a client or user asked to wake the conversation.
	ReasonWakeRequested = "WakeRequested"
	// ReasonClaimed means the owner runtime restored the conversation and serves it.
	ReasonClaimed = "Claimed"
	// ReasonCompleted means the agent finished the conversation.
	ReasonCompleted = "Completed"
	// ReasonAgentFailed means the agent failed the conversation.
	ReasonAgentFailed = "AgentFailed"
	// ReasonFlapping means a conversation changed owner more than a few
	// times a minute; suspension is held off until it settles.
	ReasonFlapping = "Flapping"
	// ReasonReplayDiverged means a replayed turn asked, sent or ran
	// something other than what was recorded; it went on live from there.
	ReasonReplayDiverged = "ReplayDiverged"
	// ReasonEventLogHole means a read of the conversation's event log found
	// an event its index names missing: the history is incomplete.
	ReasonEventLogHole = "EventLogHole"
	// ReasonPodsReady means an Agent has ready pods with free capacity.
	ReasonPodsReady = "PodsReady"
	// ReasonNoReadyPods means an Agent has no ready pod with a live Lease.
	ReasonNoReadyPods = "NoReadyPods"
	// ReasonDeploymentFailed means the Agent's Deployment could not be
	// created or updated; the message says why.
	ReasonDeploymentFailed = "DeploymentFailed"
	// ReasonFull means an Agent's ready pods have no free slot.
	ReasonFull = "Full"
)
