// Package gateway is the public entry point: it authenticates a client,
// finds the pod that owns its conversation, and pipes the client's WebSocket
// to that pod, holding the socket open while the conversation moves.
//
// This package is being built: gateway/auth authenticates clients, and
// Decide (route.go) says where a client's socket goes given the
// conversation's status: to its owner, held while it has none, a wake
// request for a Suspended one, or refused with the close code that tells
// the client what to do.
package gateway
