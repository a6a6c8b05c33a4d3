package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConversationLog and ConversationLogChunk hold a conversation's durable
// event log for the kubernetes store (the default). They are internal: only
// the owner runtime writes them, through tether.dev/tether/eventlog/kubelog.
// Both carry an owner reference to their Conversation, so deleting the
// Conversation deletes its log.

// LogEvent is one durable event.
type LogEvent struct {
	// seq is the event's sequence number.
	Seq int64 `json:"seq"`
	// epoch of the owner that appended it.
	Epoch int64 `json:"epoch"`
	// type of the event.
	// +kubebuilder:validation:MaxLength=64
	Type string `json:"type"`
	// clientId of the client message it records, if any.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	ClientID string `json:"clientId,omitempty"`
	// time it was appended.
	Time metav1.MicroTime `json:"time"`
	// data is the event's JSON payload.
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	Data string `json:"data,omitempty"`
}

// LogChunkRef names a sealed chunk and the events it holds.
type LogChunkRef struct {
	// name of the ConversationLogChunk.
	Name string `json:"name"`
	// firstSeq and lastSeq of the events in the chunk.
	FirstSeq int64 `json:"firstSeq"`
	LastSeq  int64 `json:"lastSeq"`
}

// ConversationLogSpec is the head of a log: the fence, the bounds, the sealed
// chunks and the newest events. Every append is one update of this object
// with its resourceVersion, so the epoch check and the append are atomic.
type ConversationLogSpec struct {
	// conversation is the name of the Conversation.
	Conversation string `json:"conversation"`
	// epoch is the newest epoch that claimed or appended; older epochs are
	// fenced.
	Epoch int64 `json:"epoch"`
	// firstSeq is the first retained sequence number.
	FirstSeq int64 `json:"firstSeq"`
	// lastSeq is the last appended sequence number.
	LastSeq int64 `json:"lastSeq"`
	// chunks are the sealed chunks, oldest first.
	// +kubebuilder:validation:MaxItems=512
	// +optional
	Chunks []LogChunkRef `json:"chunks,omitempty"`
	// tail holds the newest events, not yet sealed into a chunk.
	// +optional
	Tail []LogEvent `json:"tail,omitempty"`
	// snapshot names the chunk holding the owner's newest snapshot of the
	// conversation's state, taken after event snapshot.lastSeq (its
	// firstSeq is the same): a new owner restores from it and the events
	// after it instead of the whole history.
	// +optional
	Snapshot *LogChunkRef `json:"snapshot,omitempty"`
}

// ConversationLog is the head of one Conversation's durable event log.
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=tether-internal
// +kubebuilder:printcolumn:name="Conversation",type=string,JSONPath=`.spec.conversation`
// +kubebuilder:printcolumn:name="Epoch",type=integer,JSONPath=`.spec.epoch`
// +kubebuilder:printcolumn:name="First",type=integer,JSONPath=`.spec.firstSeq`
// +kubebuilder:printcolumn:name="Last",type=integer,JSONPath=`.spec.lastSeq`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ConversationLog struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the log's head.
	Spec ConversationLogSpec `json:"spec"`
}

// ConversationLogList is a list of ConversationLogs.
// +kubebuilder:object:root=true
type ConversationLogList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ConversationLog `json:"items"`
}

// ConversationLogChunk holds sealed, immutable events of a log.
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=tether-internal
type ConversationLogChunk struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// events in the chunk, in order.
	// +kubebuilder:validation:MaxItems=1024
	Events []LogEvent `json:"events"`
}

// ConversationLogChunkList is a list of ConversationLogChunks.
// +kubebuilder:object:root=true
type ConversationLogChunkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ConversationLogChunk `json:"items"`
}

// LogConversationLabel on a ConversationLogChunk carries a hash of its
// Conversation's name (a name may be longer than a label value), so every
// chunk of a conversation can be found and deleted, even an orphan.
const LogConversationLabel = "tether.dev/conversation-hash"
