// Package gateway is the public entry point: it authenticates a client,
// finds the pod that owns its conversation, and pipes the client's WebSocket
// to that pod, holding the socket open while the conversation moves.
//
// This package is being built; gateway/auth, which authenticates clients, is
// the first part.
package gateway
