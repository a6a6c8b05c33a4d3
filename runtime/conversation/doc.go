// Package conversation runs one conversation for its owner: it restores the
// conversation from its durable log, applies client messages and answers at
// most once (by client id), acknowledges them only once they are durable,
// runs turns through the agent's handler, and fans events out to the sockets
// bound to it.
//
// An owner that is fenced (a newer epoch claimed the log) stops at its first
// refused append and writes nothing more.
//
// A turn cut short by a move to another pod is run again by the new owner
// from its first user message, in replay: the handler's sends and questions
// are matched with the events the old owner recorded, so nothing is
// appended twice and a recorded answer is handed back without asking again.
// Handlers must therefore be deterministic given the conversation's events.
package conversation
