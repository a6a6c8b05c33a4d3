package conversation

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/protocol"
)

// TestASnapshotRestoresTheSameState: for every point of a history, the
// state restored from a snapshot taken there and the events after it is the
// state restored from the whole history: messages of two subjects (their
// client ids), queued turns, a question and its answer, checkpoints, steps,
// a turn in progress, the end.
func TestASnapshotRestoresTheSameState(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	var history []eventlog.Event
	add := func(typ, clientID string, data any) {
		raw, _ := json.Marshal(data)
		seq := int64(len(history) + 1)
		history = append(history, eventlog.Event{Seq: seq, Epoch: 1 + seq/7, Type: typ, ClientID: clientID, Time: t0.Add(time.Duration(seq) * time.Second), Data: raw})
	}
	msg := func(id, subject, text string) {
		add(protocol.EventUserMessage, id, protocol.TextData{Text: text, Subject: subject})
	}
	msg("m-1", "alice", "refund order 1")
	msg("m-1", "bob", "same id, another subject")
	add(protocol.EventCheckpoint, "", map[string]int{"refunds": 0})
	add(protocol.EventStep, "", map[string]any{"name": "propose", "result": 42})
	add(protocol.EventPrompt, "", PromptData{ID: "approve-1", Text: "refund 42?", Options: []string{"yes", "no"}})
	add(protocol.EventAnswer, "a-1", protocol.AnswerData{PromptID: "approve-1", PromptSeq: 5, Text: "yes", Subject: "alice"})
	add(protocol.EventCheckpoint, "", map[string]int{"refunds": 1})
	add(protocol.EventAssistantMessage, "", protocol.TextData{Text: "refunded"})
	add(protocol.EventTurnFinished, "", nil)
	add(protocol.EventAssistantMessage, "", protocol.TextData{Text: "bob's turn"})
	add(protocol.EventTurnFinished, "", nil)
	msg("m-2", "alice", "another")
	add(protocol.EventPrompt, "", PromptData{ID: "approve-2", Text: "sure?"})
	add(protocol.EventTurnFinished, "", nil) // an interrupted turn: its question is moot
	msg("m-3", "alice", "and another")
	add(protocol.EventStep, "", map[string]any{"name": "propose", "result": 7})
	add(protocol.EventPrompt, "", PromptData{ID: "approve-3", Text: "refund 7?"})
	add(protocol.EventFinished, "", protocol.OutcomeData{Message: "done"})

	for end := 1; end <= len(history); end++ {
		events := history[:end]
		whole, err := restore(events)
		if err != nil {
			t.Fatal(err)
		}
		want, err := whole.snapshot(1)
		if err != nil {
			t.Fatal(err)
		}
		for cut := 1; cut <= end; cut++ {
			before, err := restore(events[:cut])
			if err != nil {
				t.Fatal(err)
			}
			data, err := before.snapshot(1)
			if err != nil {
				t.Fatal(err)
			}
			st, err := restoreSnapshot(eventlog.Snapshot{Seq: int64(cut), Data: data})
			if err != nil {
				t.Fatalf("events 1..%d, a snapshot after %d: %v", end, cut, err)
			}
			for _, e := range events[cut:] {
				if err := st.apply(e); err != nil {
					t.Fatal(err)
				}
			}
			got, err := st.snapshot(1)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("events 1..%d, from a snapshot after %d:\n%s\nwant, from all of them:\n%s", end, cut, got, want)
			}
		}
	}
}

func TestARestoreRefusesASnapshotItCannotRead(t *testing.T) {
	st := &state{applied: map[string]int64{"m-1": 1, "m-0": 0}, last: 3}
	good, err := st.snapshot(1)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(good, []byte(`"m-0"`)) {
		t.Errorf("a client id from before the retained history was kept: %s", good)
	}
	cases := []struct {
		name string
		snap eventlog.Snapshot
	}{
		{"not JSON", eventlog.Snapshot{Seq: 3, Data: []byte("{")}},
		{"another version", eventlog.Snapshot{Seq: 3, Data: bytes.Replace(good, []byte(`"v":1`), []byte(`"v":2`), 1)}},
		{"of another seq", eventlog.Snapshot{Seq: 4, Data: good}},
	}
	for _, tc := range cases {
		if _, err := restoreSnapshot(tc.snap); err == nil {
			t.Errorf("%s: restored, want an error", tc.name)
		}
	}
	if _, err := restoreSnapshot(eventlog.Snapshot{Seq: 3, Data: good}); err != nil {
		t.Errorf("a good snapshot: %v", err)
	}
}
