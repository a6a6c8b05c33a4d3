package gateway

import (
	corev1 "k8s.io/api/core/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/gateway/auth"
	"tether.dev/tether/protocol"
)

// Action is what the gateway does with a client of a conversation.
type Action int

const (
	// Route dials the owner at Decision.Upstream.
	Route Action = iota
	// Hold keeps the client's socket open, tells it the phase, and waits for
	// an owner.
	Hold
	// Wake asks the controller to place a Suspended conversation, then
	// holds.
	Wake
	// Refuse closes the client's socket with Decision.CloseCode.
	Refuse
)

// Decision is where a client's socket goes, given the conversation as the
// gateway's cache sees it.
type Decision struct {
	Action Action
	// Upstream is the owner's internal endpoint (host:port), for Route.
	Upstream string
	// Epoch of the owner routed to, so a later change is noticed.
	Epoch int64
	// Phase to tell a held client.
	Phase tetherv1alpha1.ConversationPhase
	// CloseCode and Reason, for Refuse.
	CloseCode int
	Reason    string
}

// NotYours is the close reason for a conversation that does not exist and
// for one the subject may not use, alike.
const NotYours = "no conversation of that name that your subject may use"

// Decide routes subject's socket for conv; conv is nil when the conversation
// does not exist. ownerPod is the pod conv's status names as owner, as the
// gateway's pod informer holds it (nil when it holds none): a socket is
// routed only to an owner that pod confirms (ownerServes), and held
// otherwise.
func Decide(conv *tetherv1alpha1.Conversation, ownerPod *corev1.Pod, subject string) Decision {
	switch {
	case conv == nil || !auth.Allowed(subject, conv.Spec.Subjects):
		// One answer for both: a subject cannot probe which conversations
		// exist, in its namespace or any other.
		return Decision{Action: Refuse, CloseCode: protocol.CloseForbidden, Reason: NotYours}
	case conv.DeletionTimestamp != nil:
		return Decision{Action: Refuse, CloseCode: protocol.CloseNotFound, Reason: "the conversation is being deleted"}
	}
	phase := conv.Status.Phase
	if phase == "" {
		phase = tetherv1alpha1.PhasePending
	}
	switch phase {
	case tetherv1alpha1.PhaseSucceeded, tetherv1alpha1.PhaseFailed:
		// The owner still serves the history of a finished conversation.
		if d, ok := route(conv, ownerPod, phase); ok {
			return d
		}
		return Decision{Action: Refuse, CloseCode: protocol.CloseFinished, Reason: "the conversation is over"}
	case tetherv1alpha1.PhaseSuspended:
		if _, asked := conv.Annotations[tetherv1alpha1.WakeAnnotation]; asked {
			// One wake per suspension: it is asked for already (by this
			// socket, another, or another replica); wait for it.
			return Decision{Action: Hold, Phase: phase}
		}
		return Decision{Action: Wake, Phase: phase}
	}
	if d, ok := route(conv, ownerPod, phase); ok {
		return d
	}
	return Decision{Action: Hold, Phase: phase}
}

func route(conv *tetherv1alpha1.Conversation, ownerPod *corev1.Pod, phase tetherv1alpha1.ConversationPhase) (Decision, bool) {
	owner := conv.Status.Owner
	if owner == nil || owner.IP == "" || owner.Port == 0 || conv.Status.Lease == nil {
		return Decision{}, false
	}
	if ok, _ := ownerServes(conv, ownerPod); !ok {
		return Decision{}, false
	}
	return Decision{Action: Route, Upstream: upstreamOf(owner), Epoch: conv.Status.Lease.Epoch, Phase: phase}, true
}
