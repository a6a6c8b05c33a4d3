// Package protocol is Tether's wire protocol, tether.v1: the JSON text frames
// a client and the gateway exchange, and the gateway and the runtime, over a
// WebSocket. The same package encodes and decodes on every side, so there is
// one definition of every frame, limit, error code and close code.
// docs/protocol.md describes it with examples.
package protocol
