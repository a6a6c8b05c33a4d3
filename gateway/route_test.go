package gateway

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/protocol"
)

func conversation(phase tetherv1alpha1.ConversationPhase, owned bool) *tetherv1alpha1.Conversation {
	c := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "c"},
		Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
			Subjects: []string{"alice", "bob"}},
		Status: tetherv1alpha1.ConversationStatus{Phase: phase, Lease: &tetherv1alpha1.ConversationLease{Epoch: 4}},
	}
	if owned {
		c.Status.Owner = &tetherv1alpha1.OwnerPod{Name: "approvals-a", UID: "u", IP: "127.0.0.7", Port: 7070}
		c.Status.Lease.Holder = "approvals-a"
	}
	return c
}

// ownerPod is the pod conversation() names as owner, running and ready.
func ownerPod(mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "approvals-a", UID: "u",
			Labels: map[string]string{tetherv1alpha1.AgentLabel: "approvals"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.7", PodIPs: []corev1.PodIP{{IP: "127.0.0.7"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func TestDecide(t *testing.T) {
	deleting := conversation(tetherv1alpha1.PhaseRunning, true)
	deleting.DeletionTimestamp = &metav1.Time{}
	wakeAsked := conversation(tetherv1alpha1.PhaseSuspended, false)
	wakeAsked.Annotations = map[string]string{tetherv1alpha1.WakeAnnotation: "2026-12-01T08:00:00Z"}
	routed := func(phase tetherv1alpha1.ConversationPhase) Decision {
		return Decision{Action: Route, Upstream: "127.0.0.7:7070", Epoch: 4, Phase: phase}
	}
	held := Decision{Action: Hold, Phase: tetherv1alpha1.PhaseRunning}
	pointedAt := func(ip string) *tetherv1alpha1.Conversation {
		c := conversation(tetherv1alpha1.PhaseRunning, true)
		c.Status.Owner.IP = ip
		return c
	}
	cases := []struct {
		name    string
		conv    *tetherv1alpha1.Conversation
		pod     *corev1.Pod
		subject string
		want    Decision
	}{
		{"running: to its owner", conversation(tetherv1alpha1.PhaseRunning, true), ownerPod(), "alice", routed(tetherv1alpha1.PhaseRunning)},
		{"awaiting input: to its owner", conversation(tetherv1alpha1.PhaseAwaitingInput, true), ownerPod(), "bob", routed(tetherv1alpha1.PhaseAwaitingInput)},
		{"placed, not yet claimed: to the new owner", conversation(tetherv1alpha1.PhaseRescheduling, true), ownerPod(), "alice", routed(tetherv1alpha1.PhaseRescheduling)},
		{"rescheduling without an owner: hold", conversation(tetherv1alpha1.PhaseRescheduling, false), nil, "alice", Decision{Action: Hold, Phase: tetherv1alpha1.PhaseRescheduling}},
		{"new, not yet placed: hold", conversation("", false), nil, "alice", Decision{Action: Hold, Phase: tetherv1alpha1.PhasePending}},
		{"suspended: wake", conversation(tetherv1alpha1.PhaseSuspended, false), nil, "alice", Decision{Action: Wake, Phase: tetherv1alpha1.PhaseSuspended}},
		{"suspended, wake asked for already: hold, do not ask again", wakeAsked, nil, "alice", Decision{Action: Hold, Phase: tetherv1alpha1.PhaseSuspended}},
		{"finished, owner still there: replay its history", conversation(tetherv1alpha1.PhaseSucceeded, true), ownerPod(), "alice", routed(tetherv1alpha1.PhaseSucceeded)},
		{"finished, no owner", conversation(tetherv1alpha1.PhaseFailed, false), nil, "alice", Decision{Action: Refuse, CloseCode: protocol.CloseFinished, Reason: "the conversation is over"}},
		{"another subject", conversation(tetherv1alpha1.PhaseRunning, true), ownerPod(), "mallory", Decision{Action: Refuse, CloseCode: protocol.CloseForbidden, Reason: NotYours}},
		{"no such conversation: the same answer as another subject's", nil, nil, "alice", Decision{Action: Refuse, CloseCode: protocol.CloseForbidden, Reason: NotYours}},
		{"being deleted", deleting, ownerPod(), "alice", Decision{Action: Refuse, CloseCode: protocol.CloseNotFound, Reason: "the conversation is being deleted"}},
		// A status written to point elsewhere is held, never dialed.
		{"owner pod unknown to the gateway", conversation(tetherv1alpha1.PhaseRunning, true), nil, "alice", held},
		{"owner IP is not the pod's", pointedAt("10.0.0.9"), ownerPod(), "alice", held},
		{"owner IP is a host name", pointedAt("evil.example"), ownerPod(), "alice", held},
		{"a replaced pod of the same name", conversation(tetherv1alpha1.PhaseRunning, true), ownerPod(func(p *corev1.Pod) { p.UID = "other" }), "alice", held},
		{"a pod of another Agent", conversation(tetherv1alpha1.PhaseRunning, true), ownerPod(func(p *corev1.Pod) { p.Labels[tetherv1alpha1.AgentLabel] = "shell" }), "alice", held},
		{"a pod of another namespace", conversation(tetherv1alpha1.PhaseRunning, true), ownerPod(func(p *corev1.Pod) { p.Namespace = "other" }), "alice", held},
		{"owner pod not ready", conversation(tetherv1alpha1.PhaseRunning, true), ownerPod(func(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }), "alice", held},
		{"owner pod not running", conversation(tetherv1alpha1.PhaseRunning, true), ownerPod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }), "alice", held},
		{"owner IPv6, spelled otherwise", func() *tetherv1alpha1.Conversation {
			c := pointedAt("fd00::0:7")
			return c
		}(), ownerPod(func(p *corev1.Pod) {
			p.Status.PodIP, p.Status.PodIPs = "127.0.0.7", []corev1.PodIP{{IP: "127.0.0.7"}, {IP: "fd00::7"}}
		}), "alice",
			Decision{Action: Route, Upstream: "[fd00::7]:7070", Epoch: 4, Phase: tetherv1alpha1.PhaseRunning}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Decide(tc.conv, tc.pod, tc.subject)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
