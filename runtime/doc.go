// Package runtime is the process in every worker pod. It holds the pod's
// Lease (one per pod, not per conversation), claims the conversations the
// controller assigns to its pod, runs them through an agent, writes their
// durable event log, and serves the internal WebSocket the gateway dials.
//
// A runtime that cannot renew its Lease stops acting for every conversation
// before the Lease runs out (self-fencing), so that by the time the
// controller moves them elsewhere it has already let go.
package runtime
