// Package v1alpha1 holds the tether.dev/v1alpha1 API: Agent, a pool of worker
// pods that host conversations of one kind, and Conversation, one interactive
// conversation whose phase, pending prompt, owner pod and fencing lease live in
// its status. The package holds types, validation markers and constants only;
// behaviour lives in the controllers and the runtime.
//
// +kubebuilder:object:generate=true
// +groupName=tether.dev
package v1alpha1
