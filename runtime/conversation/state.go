package conversation

import (
	"encoding/json"
	"fmt"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/protocol"
)

// PromptData is the payload of a prompt event.
type PromptData struct {
	ID      string   `json:"id"`
	Text    string   `json:"text"`
	Options []string `json:"options,omitempty"`
	// Review, when set, puts an action (a tool call) before the human.
	Review *protocol.Review `json:"review,omitempty"`
}

// state is what a conversation's events say about it.
type state struct {
	// applied maps client ids to the seq of the event that recorded them.
	applied map[string]int64
	// prompt is the prompt awaiting an answer, with its seq; nil if none.
	prompt    *PromptData
	promptSeq int64
	// turns are the user messages whose turn has not finished, oldest
	// first; the first one's turn may have started (see turnEvents).
	turns []eventlog.Event
	// turnEvents are the events recorded so far by the unfinished first
	// turn, after its user message: what a replay matches.
	turnEvents []eventlog.Event
	// checkpoint is the newest checkpoint's data.
	checkpoint json.RawMessage
	// finished is set once the conversation succeeded or failed.
	finished, failed bool
	outcome          string
	last             int64
}

// restore folds a conversation's events, oldest first, into its state.
func restore(events []eventlog.Event) (*state, error) {
	s := &state{applied: map[string]int64{}}
	for _, e := range events {
		if err := s.apply(e); err != nil {
			return nil, fmt.Errorf("event %d: %w", e.Seq, err)
		}
	}
	return s, nil
}

func (s *state) apply(e eventlog.Event) error {
	s.last = e.Seq
	if e.ClientID != "" {
		s.applied[appliedKey(subjectOf(e), e.ClientID)] = e.Seq
	}
	switch e.Type {
	case protocol.EventUserMessage:
		s.turns = append(s.turns, e)
		return nil
	case protocol.EventTurnFinished:
		if len(s.turns) > 0 {
			s.turns = s.turns[1:]
		}
		// A question left open by an interrupted turn is moot.
		s.turnEvents, s.prompt, s.promptSeq = nil, nil, 0
		return nil
	case protocol.EventFinished, protocol.EventFailed:
		s.finished, s.failed = true, e.Type == protocol.EventFailed
		var d protocol.OutcomeData
		_ = json.Unmarshal(e.Data, &d)
		s.outcome = d.Message
		s.prompt = nil
		s.turns, s.turnEvents = nil, nil
		return nil
	case protocol.EventPrompt:
		var p PromptData
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return fmt.Errorf("prompt payload: %w", err)
		}
		s.prompt, s.promptSeq = &p, e.Seq
	case protocol.EventAnswer:
		s.prompt, s.promptSeq = nil, 0
	case protocol.EventCheckpoint:
		s.checkpoint = e.Data
	}
	if len(s.turns) > 0 {
		s.turnEvents = append(s.turnEvents, e)
	}
	return nil
}

// appliedKey scopes a client's message id to its subject: two subjects of
// one conversation may pick the same id, and one must never have the
// other's message acknowledged as a duplicate and dropped.
func appliedKey(subject, id string) string {
	if subject == "" {
		return id
	}
	return subject + "\x00" + id
}

// subjectOf is the subject a user message or an answer records.
func subjectOf(e eventlog.Event) string {
	if e.Type != protocol.EventUserMessage && e.Type != protocol.EventAnswer {
		return ""
	}
	var d struct {
		Subject string `json:"subject"`
	}
	_ = json.Unmarshal(e.Data, &d) // an event without a subject is the runtime's own
	return d.Subject
}

// savedState is a state as a snapshot keeps it (eventlog.Snapshotter).
type savedState struct {
	Version    int              `json:"v"`
	Applied    map[string]int64 `json:"applied,omitempty"`
	Prompt     *PromptData      `json:"prompt,omitempty"`
	PromptSeq  int64            `json:"promptSeq,omitempty"`
	Turns      []eventlog.Event `json:"turns,omitempty"`
	TurnEvents []eventlog.Event `json:"turnEvents,omitempty"`
	Checkpoint json.RawMessage  `json:"checkpoint,omitempty"`
	Finished   bool             `json:"finished,omitempty"`
	Failed     bool             `json:"failed,omitempty"`
	Outcome    string           `json:"outcome,omitempty"`
	Last       int64            `json:"last"`
}

// snapshotVersion is the version of savedState this runtime writes and
// reads; a snapshot of another version is not used (the history is read
// whole instead).
const snapshotVersion = 1

// snapshot encodes the state, keeping the client ids of events from first
// on: what a restore of the retained history would know.
func (s *state) snapshot(first int64) ([]byte, error) {
	applied := make(map[string]int64, len(s.applied))
	for id, seq := range s.applied {
		if seq >= first {
			applied[id] = seq
		}
	}
	return json.Marshal(savedState{
		Version: snapshotVersion, Applied: applied, Prompt: s.prompt, PromptSeq: s.promptSeq, Turns: s.turns, TurnEvents: s.turnEvents,
		Checkpoint: s.checkpoint, Finished: s.finished, Failed: s.failed, Outcome: s.outcome, Last: s.last,
	})
}

// restoreSnapshot decodes a state a snapshot after seq keeps.
func restoreSnapshot(snap eventlog.Snapshot) (*state, error) {
	var saved savedState
	if err := json.Unmarshal(snap.Data, &saved); err != nil {
		return nil, fmt.Errorf("decoding the snapshot after seq %d: %w", snap.Seq, err)
	}
	if saved.Version != snapshotVersion || saved.Last != snap.Seq {
		return nil, fmt.Errorf("the snapshot after seq %d is version %d of the state after seq %d; this runtime reads version %d", snap.Seq, saved.Version, saved.Last, snapshotVersion)
	}
	if saved.Applied == nil {
		saved.Applied = map[string]int64{}
	}
	return &state{
		applied: saved.Applied, prompt: saved.Prompt, promptSeq: saved.PromptSeq, turns: saved.Turns, turnEvents: saved.TurnEvents,
		checkpoint: saved.Checkpoint, finished: saved.Finished, failed: saved.Failed, outcome: saved.Outcome, last: saved.Last,
	}, nil
}
