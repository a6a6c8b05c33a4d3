// Package eventlog is the durable event log of a conversation: what a new
// owner resumes from when a pod dies, and what a reconnecting client is
// replayed from.
//
// Every event gets a per-conversation sequence number, strictly increasing and
// without gaps. Writes are fenced by the conversation's epoch: an owner first
// claims the log at its epoch, and an append under an older epoch fails with
// ErrFenced and writes nothing. The epoch check and the append are one atomic
// step in every backend.
//
// Backends: memory (development and unit tests; lost with the pod), kube
// (chunk objects in the API server, the default) and redis (Redis Streams,
// for scale). eventlogtest holds the conformance suite they all pass.
package eventlog
