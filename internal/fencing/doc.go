// Package fencing is how an owner writes a Conversation's status: only while
// the epoch it was given is still the current one. Every write is an update
// with the object's resourceVersion, so the epoch check and the write are one
// atomic step on the API server; a writer whose epoch is stale gets ErrFenced
// and writes nothing.
package fencing
