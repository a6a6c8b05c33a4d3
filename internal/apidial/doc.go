// Package apidial makes Tether's clients of the API server wait out its
// restart instead of backing off from it.
//
// client-go's reflectors (every informer of the manager, the gateway and the
// runtimes) back off after each failed list or watch: 0.8 s, doubling with
// jitter up to 30 s, and reset only after two minutes without a failure. An
// API server that restarts in a few seconds refuses connections meanwhile,
// so each informer failed several times in a row and came back seconds
// after the server did: in the chaos suite, a pod deleted after a restart
// had its conversations moved up to 12 s later. A refused connection is the
// one failure in which nothing was sent, so dialling again is safe for every
// request, writes included: Dialer does, at a short interval, for as long as
// the request's context allows and at most Patience, and the informer's
// request simply completes once the server listens again.
package apidial
