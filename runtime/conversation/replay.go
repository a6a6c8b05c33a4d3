package conversation

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/internal/textlimit"
	"tether.dev/tether/protocol"
)

// A turn cut short by a move is run again by the next owner, from its user
// message. Its calls are matched, in order, with what the earlier run
// recorded, and a recorded event is reused only for the same call: a send of
// the same text, a question with the same id, text and options, a step of
// the same name, a checkpoint of the same state. The recorded answer to a
// question is handed back only when the question matched, so a human's
// answer is applied only to the question the human was shown. The first
// call that differs ends the replay: the difference is recorded as a
// replay_diverged event and on the Conversation's ReplayDiverged condition,
// and the turn goes on live from there (the call is recorded anew; a
// recorded answer after that point is never used).

// callOf describes the call an agent makes: the event it would record.
type callOf struct {
	event string
	data  json.RawMessage
}

// sameCall reports whether recorded is the event the call would record.
func sameCall(recorded eventlog.Event, call callOf) bool {
	if recorded.Type != call.event {
		return false
	}
	switch call.event {
	case protocol.EventAssistantMessage:
		var a, b protocol.TextData
		return json.Unmarshal(recorded.Data, &a) == nil && json.Unmarshal(call.data, &b) == nil && a.Text == b.Text
	case protocol.EventPrompt:
		var a, b PromptData
		return json.Unmarshal(recorded.Data, &a) == nil && json.Unmarshal(call.data, &b) == nil &&
			a.ID == b.ID && a.Text == b.Text && slices.Equal(a.Options, b.Options) && sameReview(a.Review, b.Review)
	case protocol.EventStep, protocol.EventStepStarted:
		var a, b protocol.StepData
		return json.Unmarshal(recorded.Data, &a) == nil && json.Unmarshal(call.data, &b) == nil && a.Name == b.Name && a.Key == b.Key
	}
	return jsonEqual(recorded.Data, call.data)
}

func sameReview(a, b *protocol.Review) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Action == b.Action && a.Description == b.Description && slices.Equal(a.Allowed, b.Allowed) && jsonEqual(a.Args, b.Args)
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	return reflect.DeepEqual(x, y)
}

// replayLocked matches call with the next recorded event of the turn being
// replayed and consumes it; nil when there is none to match, or when the
// replay diverged here (then the divergence is recorded and the replay
// dropped, and the caller records its call live).
func (c *Conversation) replayLocked(ctx context.Context, call callOf) (*eventlog.Event, error) {
	if len(c.replay) == 0 {
		return nil, nil
	}
	next := c.replay[0]
	if sameCall(next, call) {
		c.replay = c.replay[1:]
		return &next, nil
	}
	c.replay = nil
	d := protocol.ReplayDivergedData{RecordedSeq: next.Seq, Recorded: describe(next.Type, next.Data), Got: describe(call.event, call.data)}
	data, _ := json.Marshal(d)
	seq, err := c.appendLocked(ctx, eventlog.Event{Type: protocol.EventReplayDiverged, Data: data})
	if err != nil {
		return nil, err
	}
	c.diverged = textlimit.Truncate(fmt.Sprintf("a turn run again after a move had recorded %s at seq %d and now did %s (replay_diverged at seq %d); it went on live",
		d.Recorded, d.RecordedSeq, d.Got, seq), 256)
	return nil, c.publishLocked(ctx)
}

// describe names an event briefly, for a divergence.
func describe(event string, data json.RawMessage) string {
	switch event {
	case protocol.EventAssistantMessage:
		var d protocol.TextData
		_ = json.Unmarshal(data, &d)
		return fmt.Sprintf("message %.40q", d.Text)
	case protocol.EventPrompt:
		var p PromptData
		_ = json.Unmarshal(data, &p)
		return fmt.Sprintf("question %s %.40q", p.ID, p.Text)
	case protocol.EventStep:
		var s protocol.StepData
		_ = json.Unmarshal(data, &s)
		return fmt.Sprintf("step %.40q", s.Name)
	case protocol.EventAnswer:
		return "an answer"
	}
	return event
}

// clientFrame is the frame a socket gets for a durable event: an agent's
// own records (step results, checkpoints) go without their data, so a
// client sees every sequence number but not the agent's internals.
func clientFrame(e eventlog.Event) protocol.ServerFrame {
	data := e.Data
	switch e.Type {
	case protocol.EventCheckpoint:
		data = nil
	case protocol.EventStep, protocol.EventStepStarted:
		var s protocol.StepData
		_ = json.Unmarshal(e.Data, &s)
		data, _ = json.Marshal(protocol.StepData{Name: s.Name, Summary: s.Summary})
	}
	return protocol.EventFrame(e.Seq, e.Type, e.ClientID, e.Time, data)
}
