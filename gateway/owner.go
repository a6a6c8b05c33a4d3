package gateway

import (
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// Why a conversation's status alone never decides where the gateway dials:
// whoever can write a Conversation's status (the controller, and a runtime
// for the conversations it owns) could otherwise point clients' sockets,
// and the gateway's upstream credential, at any address. The gateway dials
// only a pod its own pod informer knows to be the owner the status names.

// ownerServes reports whether pod, as the gateway's pod informer holds it,
// is the owner conv's status names and may be dialed: in the conversation's
// namespace, the same UID, a worker of the conversation's Agent (its
// tether.dev/agent label), running and ready, with the IP the status names.
// The reason says why not.
func ownerServes(conv *tetherv1alpha1.Conversation, pod *corev1.Pod) (bool, string) {
	owner := conv.Status.Owner
	switch {
	case pod == nil:
		return false, "the gateway does not know the owner pod"
	case pod.Namespace != conv.Namespace || pod.Name != owner.Name:
		return false, "the owner pod is another pod"
	case string(pod.UID) != owner.UID:
		return false, "the owner pod was replaced"
	case pod.Labels[tetherv1alpha1.AgentLabel] != conv.Spec.AgentRef.Name:
		return false, "the owner pod is not a worker of the conversation's Agent"
	case pod.Status.Phase != corev1.PodRunning:
		return false, "the owner pod is not running"
	case !podIsReady(pod):
		return false, "the owner pod is not ready"
	case !podHasIP(pod, owner.IP):
		return false, "the owner's address is not the pod's"
	}
	return true, ""
}

func podIsReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podHasIP reports whether ip is one of the pod's IPs, compared as
// addresses (an IPv6 address has more than one spelling).
func podHasIP(pod *corev1.Pod, ip string) bool {
	want := net.ParseIP(ip)
	if want == nil {
		return false
	}
	if got := net.ParseIP(pod.Status.PodIP); got != nil && got.Equal(want) {
		return true
	}
	for _, p := range pod.Status.PodIPs {
		if got := net.ParseIP(p.IP); got != nil && got.Equal(want) {
			return true
		}
	}
	return false
}

// upstreamOf is the owner's internal endpoint.
func upstreamOf(owner *tetherv1alpha1.OwnerPod) string {
	return net.JoinHostPort(net.ParseIP(owner.IP).String(), strconv.Itoa(int(owner.Port)))
}
