// Package sharedctx gives one write that carries the work of several
// callers a context that ends only when every one of them has given up: a
// caller going away must not fail the others' part of a write they share
// (group commit in the event log and in a conversation's appends).
package sharedctx
