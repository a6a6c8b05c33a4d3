package conversation

import (
	"context"
	"fmt"
	"strings"
	"testing"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/protocol"
)

// TestTakeWaiting: an append takes along, in the order they came, the
// waiting messages that would be accepted as they are, and leaves the rest
// to their submitters.
func TestTakeWaiting(t *testing.T) {
	msg := func(subject, id string) *waitingMessage {
		f := protocol.ClientFrame{Type: protocol.TypeMessage, ID: id, Subject: subject, Text: "hi"}
		return &waitingMessage{ctx: context.Background(), frame: f, event: messageEvent(f)}
	}
	userMessage := messageEvent(protocol.ClientFrame{ID: "own", Subject: "s"})
	output := eventlog.Event{Type: protocol.EventAssistantMessage, Data: []byte(`{"text":"out"}`)}
	huge := msg("s", "huge")
	huge.event.Data = []byte(`"` + strings.Repeat("x", eventlog.MaxEventBytes) + `"`)
	cases := []struct {
		name    string
		policy  tetherv1alpha1.BusyPolicy
		running bool
		turns   int
		applied []string // subject/id already in the log
		events  []eventlog.Event
		waiting []*waitingMessage
		want    string
	}{
		{"idle: all, in order", tetherv1alpha1.BusyPolicyEnqueue, false, 0, nil, []eventlog.Event{output},
			[]*waitingMessage{msg("a", "1"), msg("b", "1"), msg("a", "2")}, "[a/1 b/1 a/2]"},
		{"a duplicate of the log or of the append stays", tetherv1alpha1.BusyPolicyEnqueue, false, 0, []string{"a/1"}, []eventlog.Event{userMessage},
			[]*waitingMessage{msg("a", "1"), msg("s", "own"), msg("b", "1"), msg("b", "1")}, "[b/1]"},
		{"reject while a turn runs", tetherv1alpha1.BusyPolicyReject, true, 1, nil, []eventlog.Event{output},
			[]*waitingMessage{msg("a", "1")}, "[]"},
		{"reject behind the append's own message", tetherv1alpha1.BusyPolicyReject, false, 0, nil, []eventlog.Event{userMessage},
			[]*waitingMessage{msg("a", "1")}, "[]"},
		{"reject when idle takes the first only", tetherv1alpha1.BusyPolicyReject, false, 0, nil, []eventlog.Event{output},
			[]*waitingMessage{msg("a", "1"), msg("b", "1")}, "[a/1]"},
		{"enqueue up to the queue's room", tetherv1alpha1.BusyPolicyEnqueue, true, 2, nil, []eventlog.Event{output},
			[]*waitingMessage{msg("a", "1"), msg("b", "1"), msg("c", "1"), msg("d", "1")}, "[a/1 b/1]"},
		{"interrupt takes all", tetherv1alpha1.BusyPolicyInterrupt, true, 3, nil, []eventlog.Event{output},
			[]*waitingMessage{msg("a", "1"), msg("b", "1"), msg("c", "1"), msg("d", "1")}, "[a/1 b/1 c/1 d/1]"},
		{"an event the store refuses stays", tetherv1alpha1.BusyPolicyEnqueue, false, 0, nil, []eventlog.Event{output},
			[]*waitingMessage{huge, msg("a", "1")}, "[a/1]"},
		{"nothing after the end", tetherv1alpha1.BusyPolicyEnqueue, false, 0, nil, []eventlog.Event{{Type: protocol.EventFinished}},
			[]*waitingMessage{msg("a", "1")}, "[]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Conversation{cfg: Config{Epoch: 1, BusyPolicy: tc.policy, MaxQueued: 3}, st: &state{applied: map[string]int64{}}, running: tc.running}
			for i := range tc.turns {
				c.st.turns = append(c.st.turns, eventlog.Event{Seq: int64(i + 1)})
			}
			for i, a := range tc.applied {
				subject, id, _ := strings.Cut(a, "/")
				c.st.applied[appliedKey(subject, id)] = int64(i + 1)
			}
			for _, m := range tc.waiting {
				c.inbox.add(m)
			}
			var got []string
			for _, m := range c.takeWaitingLocked(tc.events) {
				if !m.taken {
					t.Errorf("%s taken but not marked", m.frame.ID)
				}
				got = append(got, m.frame.Subject+"/"+m.frame.ID)
			}
			if fmt.Sprint(got) != tc.want {
				t.Errorf("taken %v, want %s", got, tc.want)
			}
			if left := len(c.inbox.waiting); left != len(tc.waiting)-len(got) {
				t.Errorf("%d left waiting, want %d", left, len(tc.waiting)-len(got))
			}
		})
	}
}
