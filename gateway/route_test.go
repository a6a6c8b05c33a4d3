package gateway

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/protocol"
)

func conversation(phase tetherv1alpha1.ConversationPhase, owned bool) *tetherv1alpha1.Conversation {
	c := &tetherv1alpha1.Conversation{
		Spec:   tetherv1alpha1.ConversationSpec{Subjects: []string{"alice", "bob"}},
		Status: tetherv1alpha1.ConversationStatus{Phase: phase, Lease: &tetherv1alpha1.ConversationLease{Epoch: 4}},
	}
	if owned {
		c.Status.Owner = &tetherv1alpha1.OwnerPod{Name: "approvals-a", UID: "u", IP: "127.0.0.7", Port: 7070}
		c.Status.Lease.Holder = "approvals-a"
	}
	return c
}

func TestDecide(t *testing.T) {
	deleting := conversation(tetherv1alpha1.PhaseRunning, true)
	deleting.DeletionTimestamp = &metav1.Time{}
	wakeAsked := conversation(tetherv1alpha1.PhaseSuspended, false)
	wakeAsked.Annotations = map[string]string{tetherv1alpha1.WakeAnnotation: "2026-12-01T08:00:00Z"}
	routed := func(phase tetherv1alpha1.ConversationPhase) Decision {
		return Decision{Action: Route, Upstream: "127.0.0.7:7070", Epoch: 4, Phase: phase}
	}
	cases := []struct {
		name    string
		conv    *tetherv1alpha1.Conversation
		subject string
		want    Decision
	}{
		{"running: to its owner", conversation(tetherv1alpha1.PhaseRunning, true), "alice", routed(tetherv1alpha1.PhaseRunning)},
		{"awaiting input: to its owner", conversation(tetherv1alpha1.PhaseAwaitingInput, true), "bob", routed(tetherv1alpha1.PhaseAwaitingInput)},
		{"placed, not yet claimed: to the new owner", conversation(tetherv1alpha1.PhaseRescheduling, true), "alice", routed(tetherv1alpha1.PhaseRescheduling)},
		{"rescheduling without an owner: hold", conversation(tetherv1alpha1.PhaseRescheduling, false), "alice", Decision{Action: Hold, Phase: tetherv1alpha1.PhaseRescheduling}},
		{"new, not yet placed: hold", conversation("", false), "alice", Decision{Action: Hold, Phase: tetherv1alpha1.PhasePending}},
		{"suspended: wake", conversation(tetherv1alpha1.PhaseSuspended, false), "alice", Decision{Action: Wake, Phase: tetherv1alpha1.PhaseSuspended}},
		{"suspended, wake asked for already: hold, do not ask again", wakeAsked, "alice", Decision{Action: Hold, Phase: tetherv1alpha1.PhaseSuspended}},
		{"finished, owner still there: replay its history", conversation(tetherv1alpha1.PhaseSucceeded, true), "alice", routed(tetherv1alpha1.PhaseSucceeded)},
		{"finished, no owner", conversation(tetherv1alpha1.PhaseFailed, false), "alice", Decision{Action: Refuse, CloseCode: protocol.CloseFinished, Reason: "the conversation is over"}},
		{"another subject", conversation(tetherv1alpha1.PhaseRunning, true), "mallory", Decision{Action: Refuse, CloseCode: protocol.CloseForbidden, Reason: "this conversation does not allow your subject"}},
		{"no such conversation", nil, "alice", Decision{Action: Refuse, CloseCode: protocol.CloseNotFound, Reason: "no such conversation"}},
		{"being deleted", deleting, "alice", Decision{Action: Refuse, CloseCode: protocol.CloseNotFound, Reason: "the conversation is being deleted"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Decide(tc.conv, tc.subject)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
