package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// BusyPolicy says what the runtime does with a user message that arrives while
// the agent is still working on the previous turn.
// +kubebuilder:validation:Enum=Enqueue;Reject;Interrupt
type BusyPolicy string

const (
	// BusyPolicyEnqueue queues the message (up to maxQueuedMessages) and
	// delivers it when the running turn finishes.
	BusyPolicyEnqueue BusyPolicy = "Enqueue"
	// BusyPolicyReject answers the message with an error frame; nothing is
	// appended to the conversation.
	BusyPolicyReject BusyPolicy = "Reject"
	// BusyPolicyInterrupt cancels the running turn and starts a new one with
	// the message.
	BusyPolicyInterrupt BusyPolicy = "Interrupt"
)

// StoreType names a backend of the durable event log.
// +kubebuilder:validation:Enum=kubernetes;redis;memory
type StoreType string

const (
	// StoreKubernetes keeps events in chunk objects in the API server. It
	// needs nothing but the cluster and suits modest volumes.
	StoreKubernetes StoreType = "kubernetes"
	// StoreRedis keeps events in Redis Streams, for scale.
	StoreRedis StoreType = "redis"
	// StoreMemory keeps events in the runtime's memory. For development and
	// tests only: it does not survive the loss of a pod.
	StoreMemory StoreType = "memory"
)

// AgentSpec is the desired state of an Agent.
// +kubebuilder:validation:XValidation:rule="has(self.template) != has(self.selector)",message="exactly one of spec.template (Tether runs the pods) or spec.selector (you run the pods) must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.selector) || !has(self.replicas)",message="spec.replicas applies only to an Agent with spec.template; with spec.selector you scale your own pods"
// +kubebuilder:validation:XValidation:rule="!has(self.agentContainer) || (has(self.template) && self.template.spec.containers.exists(c, c.name == self.agentContainer && has(c.command)))",message="spec.agentContainer must name a container of spec.template that sets command"
type AgentSpec struct {
	// template describes the worker pods Tether runs for this Agent, one
	// Deployment per Agent. Its containers must include the Tether runtime.
	// Exactly one of template and selector is set.
	// +optional
	Template *corev1.PodTemplateSpec `json:"template,omitempty"`

	// agentContainer names a container of the template that runs an agent
	// program of your own (any language, in an image of your own) speaking
	// JSON lines over stdio (docs/agents.md), instead of Tether's runtime
	// image. The manager then runs Tether's runtime in that container: an
	// init container copies the static runtime binary into a shared
	// volume, and the container's command becomes the runtime with your
	// command as its agent. The container must set command (the runtime
	// cannot read an image's entrypoint). Leave it unset when the template
	// runs Tether's runtime itself.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	AgentContainer string `json:"agentContainer,omitempty"`

	// selector picks worker pods that you run yourself (each with the Tether
	// runtime) instead of a template. Exactly one of template and selector is
	// set.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// replicas is the number of worker pods when template is set. It is the
	// target of the scale subresource, so `kubectl scale` and a
	// HorizontalPodAutoscaler work. Defaults to 1 when unset.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// autoscaling sizes the pods of an Agent with a template to its load,
	// keeping free conversation slots for new conversations and failovers
	// (a buffer, as Agones' fleet autoscaler keeps). While it is set, the
	// manager sets the Deployment's replicas and replicas above (and so an
	// HorizontalPodAutoscaler on the scale subresource) has no effect.
	// +optional
	Autoscaling *AgentAutoscaling `json:"autoscaling,omitempty"`

	// conversationsPerPod is how many conversations one worker pod hosts at
	// most. Placement never puts more than this on a pod.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	ConversationsPerPod int32 `json:"conversationsPerPod,omitempty"`

	// leaseDurationSeconds is how long a worker pod's Lease stays valid
	// without renewal. When it expires (hung process, partition, lost node)
	// the pod's conversations are rescheduled and the pod stops acting for
	// them. Shorter means faster failover and more renewals.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=300
	// +optional
	LeaseDurationSeconds int32 `json:"leaseDurationSeconds,omitempty"`

	// idleSuspendSeconds suspends a conversation that has been awaiting
	// input for longer than this, releasing its pod slot; the prompt is
	// kept and a reconnecting client wakes it. Unset means never. A
	// Conversation may set a shorter or longer value of its own.
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=2592000
	// +optional
	IdleSuspendSeconds *int32 `json:"idleSuspendSeconds,omitempty"`

	// disruptionBudget bounds how many of the pods the manager runs for
	// this Agent (with a template) a voluntary disruption (a node drain, a
	// cluster upgrade) may evict at once: the manager keeps a
	// PodDisruptionBudget for them, named after the Agent. Unset means
	// maxUnavailable 1.
	// +optional
	DisruptionBudget *DisruptionBudgetSpec `json:"disruptionBudget,omitempty"`

	// busyPolicy says what happens to a user message that arrives while a
	// turn is still running: Enqueue (default), Reject or Interrupt.
	// +kubebuilder:default=Enqueue
	// +optional
	BusyPolicy BusyPolicy `json:"busyPolicy,omitempty"`

	// maxQueuedMessages bounds the messages queued under busyPolicy Enqueue;
	// one more is answered with an error frame.
	// +kubebuilder:default=16
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +optional
	MaxQueuedMessages int32 `json:"maxQueuedMessages,omitempty"`

	// runtimePort is the port of the runtime's internal WebSocket endpoint in
	// each worker pod; the gateway dials it.
	// +kubebuilder:default=7070
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	RuntimePort int32 `json:"runtimePort,omitempty"`

	// store configures the durable event log of this Agent's conversations.
	// +kubebuilder:default={type: kubernetes}
	// +optional
	Store StoreSpec `json:"store,omitempty"`
}

// StoreSpec configures the durable event log.
// +kubebuilder:validation:XValidation:rule="self.type == 'redis' ? has(self.redis) : !has(self.redis)",message="spec.store.redis must be set when spec.store.type is redis, and only then"
type StoreSpec struct {
	// type is the backend: kubernetes (default; chunk objects in the API
	// server), redis (Redis Streams, for scale) or memory (development only,
	// lost with the pod).
	// +kubebuilder:default=kubernetes
	// +optional
	Type StoreType `json:"type,omitempty"`

	// redis configures the Redis backend; required when type is redis.
	// +optional
	Redis *RedisStoreSpec `json:"redis,omitempty"`

	// retention bounds how much history is kept per conversation. Events
	// beyond it are trimmed from the start; a client resuming before the
	// first retained event is told that its replay is incomplete.
	// +kubebuilder:default={}
	// +optional
	Retention RetentionSpec `json:"retention,omitempty"`
}

// RetentionSpec bounds the history kept per conversation.
type RetentionSpec struct {
	// maxEvents is the number of most recent events kept per conversation.
	// +kubebuilder:default=10000
	// +kubebuilder:validation:Minimum=100
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	MaxEvents int32 `json:"maxEvents,omitempty"`
}

// AgentAutoscaling keeps a buffer of free conversation slots.
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas must not be above maxReplicas"
type AgentAutoscaling struct {
	// minReplicas is the fewest pods. Default 1.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MinReplicas int32 `json:"minReplicas"`

	// maxReplicas is the most pods.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxReplicas int32 `json:"maxReplicas"`

	// freeSlots is the buffer: at least this many free conversation slots
	// (a number), or at least this share of all slots free (a percentage
	// below 100%).
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^[0-9]{1,2}%$')",message="freeSlots is a number of slots, or a percentage from 0% to 99%"
	FreeSlots intstr.IntOrString `json:"freeSlots"`
}

// DisruptionBudgetSpec is the PodDisruptionBudget the manager keeps for an
// Agent's pods.
type DisruptionBudgetSpec struct {
	// maxUnavailable is how many of the pods (a number, or a percentage of
	// them) may be evicted at once; 0 refuses every voluntary eviction.
	// Default 1.
	// +kubebuilder:validation:XIntOrString
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// disabled: the manager keeps no PodDisruptionBudget for this Agent
	// (you keep your own; two budgets over one pod make its eviction fail).
	// +optional
	Disabled bool `json:"disabled,omitempty"`
}

// RedisStoreSpec says how to reach Redis. Secrets come from Kubernetes
// Secrets in the Agent's namespace, never from the Agent itself.
type RedisStoreSpec struct {
	// addresses are host:port pairs: one for a single server, several for a
	// Redis Cluster, or the sentinels when masterName is set.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=261
	// +kubebuilder:validation:items:Pattern=`^[^\s:]+:[0-9]{1,5}$`
	// +listType=atomic
	Addresses []string `json:"addresses"`

	// masterName selects Redis Sentinel mode with this master.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	MasterName string `json:"masterName,omitempty"`

	// db is the database number (single server or Sentinel only).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=15
	// +optional
	DB int32 `json:"db,omitempty"`

	// username for Redis ACL authentication.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Username string `json:"username,omitempty"`

	// passwordSecretRef names the Secret key holding the Redis password.
	// +optional
	PasswordSecretRef *corev1.SecretKeySelector `json:"passwordSecretRef,omitempty"`

	// tls enables TLS to Redis.
	// +optional
	TLS *RedisTLSSpec `json:"tls,omitempty"`

	// minReplicas, on a replicated Redis (Sentinel or Cluster), makes each
	// claim and append wait (WAIT) until this many replicas of its master
	// have it before it is acknowledged. Redis replicates asynchronously:
	// with 0, a master that crashes right after acknowledging loses that
	// append, or a claim's fence, to the failover. Appends fail while fewer
	// replicas answer. See docs/operations.md.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=5
	// +optional
	MinReplicas int32 `json:"minReplicas,omitempty"`

	// keyPrefix is prepended to every key Tether writes, so several Agents
	// or installations can share one Redis.
	// +kubebuilder:default="tether:"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	KeyPrefix string `json:"keyPrefix,omitempty"`
}

// RedisTLSSpec configures TLS to Redis.
type RedisTLSSpec struct {
	// caSecretRef names the Secret key holding the PEM CA bundle that signs
	// the Redis server certificate. Unset means the system roots.
	// +optional
	CASecretRef *corev1.SecretKeySelector `json:"caSecretRef,omitempty"`

	// serverName overrides the name checked in the server certificate.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ServerName string `json:"serverName,omitempty"`
}

// AgentStatus is the observed state of an Agent.
type AgentStatus struct {
	// replicas is the number of worker pods that exist.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// readyReplicas is the number of worker pods that are ready and hold a
	// live Lease, so placement may use them.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// conversations is the number of conversations currently placed on this
	// Agent's pods.
	// +optional
	Conversations int32 `json:"conversations,omitempty"`

	// capacity is the number of conversations the ready pods can host in
	// all (readyReplicas x conversationsPerPod).
	// +optional
	Capacity int32 `json:"capacity,omitempty"`

	// freeCapacity is capacity minus the conversations placed on ready pods.
	// +optional
	FreeCapacity int32 `json:"freeCapacity,omitempty"`

	// selector is the label selector of the worker pods in string form, for
	// the scale subresource (HorizontalPodAutoscaler reads it).
	// +optional
	Selector string `json:"selector,omitempty"`

	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready says whether the Agent can take conversations.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Agent is a pool of worker pods that host conversations of one kind.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=ag,categories=tether
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`,description="Ready worker pods with a live Lease"
// +kubebuilder:printcolumn:name="Conversations",type=integer,JSONPath=`.status.conversations`,description="Conversations placed on this Agent's pods"
// +kubebuilder:printcolumn:name="Capacity",type=integer,JSONPath=`.status.capacity`,description="Conversations the ready pods can host"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Agent struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the Agent.
	// +required
	Spec AgentSpec `json:"spec"`

	// status is the observed state of the Agent, written by the controller.
	// +optional
	Status AgentStatus `json:"status,omitempty"`
}

// AgentList is a list of Agents.
// +kubebuilder:object:root=true
type AgentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Agent `json:"items"`
}
