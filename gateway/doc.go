// Package gateway is the public entry point: it authenticates a client,
// finds the pod that owns its conversation, and pipes the client's WebSocket
// to that pod, holding the socket open while the conversation moves.
//
// Decide (route.go) says where a socket goes given the conversation's
// status; the Directory is an informer cache of Conversations trimmed to
// what that needs, which also wakes held sockets the moment their
// conversation changes; Server upgrades, dials and runs one session per
// client socket. A session keeps what it needs to survive the owner's loss:
// the last event sequence number the client has, the frames held while
// there is no owner, and the frames forwarded but not yet acknowledged.
// Replicas share nothing: any replica serves any conversation.
//
// An idle session costs two goroutines (one reading each socket), two
// 512-byte read buffers and a timer for pings; write buffers come from a
// pool for the length of a write.
package gateway
