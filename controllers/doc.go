// Package controllers holds Tether's reconcilers. The Agent controller runs
// each Agent's worker pods (a Deployment for an Agent with a template) and
// reports their readiness and load. The Conversation controller places
// conversations on the least-loaded healthy pod, detects a lost owner (pod
// gone, failed, not ready, or its Lease not renewed) and moves the
// conversation with a new fencing epoch, suspends idle conversations, wakes
// them on request and deletes finished ones after their TTL.
//
// Decisions are pure functions of the objects and the time (placement.go,
// podhealth.go, lifecycle.go); the reconcilers read from the cache, decide, and
// write once.
package controllers
