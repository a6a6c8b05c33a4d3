// Package gatewayauth is how a runtime knows that a connection comes from
// Tether's gateway and no one else.
//
// The gateway presents a projected ServiceAccount token whose audience is
// the runtime's (tether-runtime by default): the kubelet mints it for the
// gateway's pod, rotates it, and nothing of it is stored in an agent's
// namespace. The runtime asks the API server about it with a TokenReview and
// accepts it only if it is valid for that audience and names the gateway's
// ServiceAccount. Results are cached for a short time, so the API server
// sees one review per gateway token and minute, not one per socket; cache
// misses are bounded, so a flood of made-up tokens cannot turn a runtime
// into an amplifier against the API server.
//
// A token of any other identity is refused even when it is a valid token of
// the cluster: an agent's own ServiceAccount token, a token for another
// audience, the runtime's own.
package gatewayauth
