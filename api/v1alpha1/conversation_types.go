package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/protocol"
)

// Caps that keep a Conversation object under 16 KiB, whatever its content:
// each text cap holds in bytes of UTF-8, not only in characters. The
// conversation's data travels over the WebSocket and lives in the durable
// log; the object holds only what routing and recovery need.
const (
	// MaxSubjects is the most subjects a Conversation may allow.
	MaxSubjects = 8
	// MaxSubjectLength is the longest subject, in bytes of UTF-8.
	MaxSubjectLength = protocol.MaxSubjectBytes
	// MaxInitialInputLength is the longest spec.initialInput, in bytes of UTF-8.
	MaxInitialInputLength = 4096
	// MaxPromptIDLength is the longest prompt id, in bytes of UTF-8.
	MaxPromptIDLength = protocol.MaxPromptIDBytes
	// MaxPromptTextLength is the longest prompt text, in bytes of UTF-8.
	MaxPromptTextLength = 2048
	// MaxPromptOptions is the most options a prompt may offer.
	MaxPromptOptions = 8
	// MaxPromptOptionLength is the longest prompt option, in bytes of UTF-8.
	MaxPromptOptionLength = 128
	// MaxConditionMessageLength is the longest condition message Tether
	// accepts, in bytes.
	MaxConditionMessageLength = 256
	// MaxConversationConditions is the most conditions a Conversation holds.
	MaxConversationConditions = 4
)

// ConversationPhase is where a conversation is in its lifecycle.
// +kubebuilder:validation:Enum=Pending;Running;AwaitingInput;Rescheduling;Suspended;Succeeded;Failed
type ConversationPhase string

const (
	// PhasePending means created or woken, waiting to be placed and claimed.
	PhasePending ConversationPhase = "Pending"
	// PhaseRunning means claimed by its owner pod; the agent is working or idle.
	PhaseRunning ConversationPhase = "Running"
	// PhaseAwaitingInput means the agent asked a human; status.prompt holds the
	// question.
	PhaseAwaitingInput ConversationPhase = "AwaitingInput"
	// PhaseRescheduling means the owner pod was lost; the conversation is moving
	// to another pod. The prompt, if any, is kept.
	PhaseRescheduling ConversationPhase = "Rescheduling"
	// PhaseSuspended means idle for longer than allowed; no pod holds it. A
	// reconnecting client or a wake request places it again.
	PhaseSuspended ConversationPhase = "Suspended"
	// PhaseSucceeded means the agent finished the conversation.
	PhaseSucceeded ConversationPhase = "Succeeded"
	// PhaseFailed means the agent failed the conversation; see the Ready
	// condition for why.
	PhaseFailed ConversationPhase = "Failed"
)

// IsFinished reports whether the phase is terminal.
func (p ConversationPhase) IsFinished() bool {
	return p == PhaseSucceeded || p == PhaseFailed
}

// WakeAnnotation on a Suspended Conversation asks the controller to place it
// again. The gateway sets it when a client connects; a user may set it with
// `kubectl annotate`. Its value is free-form (a timestamp, by convention);
// the controller removes it once it has acted.
const WakeAnnotation = "tether.dev/wake"

// OwnerField is the selectable field naming a Conversation's owner pod, so a
// runtime lists and watches only its own conversations
// (fieldSelector status.owner.name=POD). Because the owner lives in the
// status, assigning a conversation is one status write.
const OwnerField = "status.owner.name"

// AgentField is the selectable field naming a Conversation's Agent.
const AgentField = "spec.agentRef.name"

// AgentLabel is set on every worker pod of an Agent with a template, and on
// every pod Lease a runtime holds, to the Agent's name.
const AgentLabel = "tether.dev/agent"

// DrainAnnotation on a worker pod (its value: when the drain began) takes it
// out of placement and moves its conversations off it, each at a turn
// boundary: the manager sets it on the pods an Agent scales down from, and
// removes it if the pod is needed again. A user may set it with `kubectl
// annotate` to empty a pod before deleting it.
const DrainAnnotation = "tether.dev/drain"

// AgentReference names an Agent in the Conversation's namespace.
type AgentReference struct {
	// name of the Agent.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`
}

// ConversationSpec is the desired state of a Conversation.
// +kubebuilder:validation:XValidation:rule="has(self.initialInput) == has(oldSelf.initialInput) && (!has(self.initialInput) || self.initialInput == oldSelf.initialInput)",message="spec.initialInput is immutable: it was the conversation's first input"
type ConversationSpec struct {
	// agentRef names the Agent whose pods host this conversation. It cannot
	// change after creation.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.agentRef is immutable: create a new Conversation to use another Agent"
	// +required
	AgentRef AgentReference `json:"agentRef"`

	// subjects are the identities (the `sub` claim of the client's token)
	// allowed to connect to this conversation through the gateway.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.all(s, size(bytes(s)) <= 128)",message="each of spec.subjects must be at most 128 bytes of UTF-8"
	// +listType=set
	// +required
	Subjects []string `json:"subjects"`

	// initialInput is an optional first user message, delivered to the agent
	// when the conversation starts, before any client connects.
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="size(bytes(self)) <= 4096",message="spec.initialInput must be at most 4096 bytes of UTF-8"
	// +optional
	InitialInput string `json:"initialInput,omitempty"`

	// idleSuspendSeconds overrides the Agent's idle-suspend time: the
	// conversation is suspended after awaiting input this long.
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=2592000
	// +optional
	IdleSuspendSeconds *int32 `json:"idleSuspendSeconds,omitempty"`

	// ttlSecondsAfterFinished deletes the Conversation, and its durable log,
	// this long after it Succeeded or Failed. Unset means keep it.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=31536000
	// +optional
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
}

// Prompt is a question the agent asked a human and is waiting on.
type Prompt struct {
	// id identifies the prompt; an answer names the prompt it answers, so an
	// answer to an older question is never applied to a newer one.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9._:-]+$`
	// +required
	ID string `json:"id"`

	// text is the question as shown to the human.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="size(bytes(self)) <= 2048",message="status.prompt.text must be at most 2048 bytes of UTF-8"
	// +required
	Text string `json:"text"`

	// options, when set, are the answers the agent accepts (for example
	// approve and reject); otherwise any text is an answer.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.all(o, size(bytes(o)) <= 128)",message="each of status.prompt.options must be at most 128 bytes of UTF-8"
	// +listType=atomic
	// +optional
	Options []string `json:"options,omitempty"`

	// askedAt is when the agent asked. Idle suspension counts from here.
	// +required
	AskedAt metav1.Time `json:"askedAt"`

	// sequence is the durable event sequence number of the prompt event.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Sequence int64 `json:"sequence,omitempty"`
}

// OwnerPod identifies the worker pod that owns a conversation.
type OwnerPod struct {
	// name of the pod.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// uid of the pod, so a new pod with the same name is not mistaken for
	// the owner.
	// +kubebuilder:validation:MaxLength=64
	// +required
	UID string `json:"uid"`

	// ip is the pod IP the gateway dials: an IP address, never a host name.
	// The gateway dials it only while its own view of the pod agrees.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="status.owner.ip must be an IP address"
	// +optional
	IP string `json:"ip,omitempty"`

	// port is the runtime's internal WebSocket port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// draining is set by the controller while the pod is drained
	// (tether.dev/drain): its runtime starts no more turns of this
	// conversation and reports parked once none runs, and the controller
	// then moves it.
	// +optional
	Draining bool `json:"draining,omitempty"`
}

// ConversationLease is the conversation's ownership record. Its epoch is the
// fencing token: it grows on every change of ownership (assignment and
// revocation), and every write by an owner (status, durable log) carries the
// epoch it was given; a stale epoch is rejected.
type ConversationLease struct {
	// holder is the owner pod's name; empty while no pod owns the
	// conversation.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Holder string `json:"holder,omitempty"`

	// epoch is the fencing token. It never decreases.
	// +kubebuilder:validation:Minimum=0
	// +required
	Epoch int64 `json:"epoch"`

	// acquireTime is when the current holder was assigned.
	// +optional
	AcquireTime *metav1.MicroTime `json:"acquireTime,omitempty"`

	// durationSeconds is the holder pod's Lease duration: if the pod's Lease
	// is not renewed within it, the conversation is rescheduled.
	// +kubebuilder:validation:Minimum=1
	// +optional
	DurationSeconds int32 `json:"durationSeconds,omitempty"`
}

// ConversationStatus is the observed state of a Conversation. The controller
// writes placement (owner, lease, Pending, Rescheduling, Suspended); the owner
// runtime writes progress (Running, AwaitingInput, prompt, lastSequence,
// Succeeded, Failed), always under its epoch.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.lease) || (has(self.lease) && self.lease.epoch >= oldSelf.lease.epoch)",message="status.lease.epoch must never decrease: it is the fencing token"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.lastSequence) || (has(self.lastSequence) && self.lastSequence >= oldSelf.lastSequence)",message="status.lastSequence must never decrease"
// +kubebuilder:validation:XValidation:rule="!has(self.phase) || self.phase != 'AwaitingInput' || has(self.prompt)",message="status.prompt is required in phase AwaitingInput"
type ConversationStatus struct {
	// phase is where the conversation is in its lifecycle.
	// +optional
	Phase ConversationPhase `json:"phase,omitempty"`

	// prompt is the question the agent is waiting on. It is kept while the
	// conversation moves or is suspended, and sent again to every client
	// that connects.
	// +optional
	Prompt *Prompt `json:"prompt,omitempty"`

	// owner is the worker pod that holds the conversation; unset while it is
	// pending, rescheduling or suspended.
	// +optional
	Owner *OwnerPod `json:"owner,omitempty"`

	// lease is the ownership record with the fencing epoch.
	// +optional
	Lease *ConversationLease `json:"lease,omitempty"`

	// lastSequence is the sequence number of the last durable event.
	// +kubebuilder:validation:Minimum=0
	// +optional
	LastSequence int64 `json:"lastSequence,omitempty"`

	// rescheduleCount is how many times the conversation moved because its
	// owner was lost.
	// +kubebuilder:validation:Minimum=0
	// +optional
	RescheduleCount int32 `json:"rescheduleCount,omitempty"`

	// attached is true while at least one client socket is bound to the
	// owner, as the owner reports it (on the first socket bound and the
	// last one gone, not per socket). A conversation with a client
	// attached is never idle.
	// +optional
	Attached bool `json:"attached,omitempty"`

	// parked is set by the owner of a conversation whose owner is draining
	// once the conversation is at a turn boundary: no turn runs, or the
	// running one waits on a human. Messages and answers are still taken,
	// and their turns run on the next owner.
	// +optional
	Parked bool `json:"parked,omitempty"`

	// lastActiveTime is the latest activity, besides the prompt being
	// asked, that restarts the idle clock: the last client leaving, or a
	// wake. A conversation awaiting input is idle from the later of this and
	// prompt.askedAt, while no client is attached.
	// +optional
	LastActiveTime *metav1.Time `json:"lastActiveTime,omitempty"`

	// startTime is when an owner first claimed the conversation.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the conversation Succeeded or Failed; the TTL
	// counts from here.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Scheduled (placed on a pod) and Ready (claimed and
	// serving), each with a reason and a message a person can act on.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:validation:XValidation:rule="self.all(c, size(bytes(c.message)) <= 256)",message="condition messages are limited to 256 bytes"
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Conversation is one interactive conversation hosted by an Agent's pods.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=conv;convs,categories=tether
// +kubebuilder:selectablefield:JSONPath=`.spec.agentRef.name`
// +kubebuilder:selectablefield:JSONPath=`.status.phase`
// +kubebuilder:selectablefield:JSONPath=`.status.owner.name`
// +kubebuilder:printcolumn:name="Agent",type=string,JSONPath=`.spec.agentRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Owner",type=string,JSONPath=`.status.owner.name`
// +kubebuilder:printcolumn:name="Prompt",type=string,JSONPath=`.status.prompt.text`,description="The question awaiting a human answer"
// +kubebuilder:printcolumn:name="Reschedules",type=integer,JSONPath=`.status.rescheduleCount`
// +kubebuilder:printcolumn:name="Epoch",type=integer,JSONPath=`.status.lease.epoch`,priority=1
// +kubebuilder:printcolumn:name="Seq",type=integer,JSONPath=`.status.lastSequence`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Conversation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the Conversation.
	// +required
	Spec ConversationSpec `json:"spec"`

	// status is the observed state, written by the controller and the owner
	// runtime.
	// +optional
	Status ConversationStatus `json:"status,omitempty"`
}

// ConversationList is a list of Conversations.
// +kubebuilder:object:root=true
type ConversationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Conversation `json:"items"`
}
