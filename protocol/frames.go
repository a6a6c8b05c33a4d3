package protocol

import (
	"encoding/json"
	"time"
)

// Subprotocol is the WebSocket subprotocol a client asks for.
const Subprotocol = "tether.v1"

// Limits on what a client sends.
const (
	// MaxClientFrameBytes bounds one client frame; a reader sets it as its
	// read limit.
	MaxClientFrameBytes = 32 << 10
	// MaxTextBytes bounds the text of a message or an answer.
	MaxTextBytes = 16 << 10
	// MaxEncodedTextBytes bounds that text as the runtime stores it, a JSON
	// string: escaping can make 16 KiB of text six times larger ("<" is
	// \u003c), and the event holding it must stay under the event log's
	// 64 KiB limit with room for the rest of the event (edit arguments).
	MaxEncodedTextBytes = 40 << 10
)

// Limits on what an agent sends, below every limit downstream (the event
// log's 64 KiB event, the gateway's read limit on an owner's frames).
const (
	// MaxAgentTextEncodedBytes bounds the text of an agent's message as a
	// JSON string.
	MaxAgentTextEncodedBytes = 60 << 10
	// MaxDeltaEncodedBytes bounds one delta's text as a JSON string: stream
	// long output in pieces.
	MaxDeltaEncodedBytes = 16 << 10
	// MaxIDBytes bounds a client message id (also in the event log and
	// its objects, where the id is kept).
	MaxIDBytes = 128
	// MaxPromptIDBytes bounds a prompt id (also in a Conversation's
	// status.prompt.id).
	MaxPromptIDBytes = 64
	// MaxSubjectBytes bounds a subject (a Conversation's spec.subjects, the
	// subject recorded on a user event).
	MaxSubjectBytes = 128
	// MaxEventTypeBytes bounds an event's type (also in the event log and
	// its objects).
	MaxEventTypeBytes = 64
)

// Client frame types.
const (
	// TypeMessage is a user message: {"type":"message","id":"c1","text":"..."}.
	TypeMessage = "message"
	// TypeAnswer answers the pending prompt:
	// {"type":"answer","id":"c2","promptId":"p1","text":"approve"}.
	TypeAnswer = "answer"
)

// Server frame types.
const (
	// TypeEvent carries one durable event with its sequence number.
	TypeEvent = "event"
	// TypeDelta carries ephemeral streamed output ("durable": false): it is
	// not replayed, and the durable event that follows holds the whole text.
	TypeDelta = "delta"
	// TypeAck acknowledges a client message once it is durably appended.
	TypeAck = "ack"
	// TypeStatus says where the conversation is (phase, owner moving).
	TypeStatus = "status"
	// TypeReplayComplete ends a replay and says whether it was complete.
	TypeReplayComplete = "replay_complete"
	// TypeReset comes first in a bind whose cursor did not name the
	// conversation's history: Code says why (ResetCursorAhead,
	// ResetLogChanged), Log names the history that follows. The client
	// forgets its cursor and what it showed; the replay that follows starts
	// at the first retained event of that history.
	TypeReset = "reset"
	// TypePendingPrompt re-sends the question the agent is waiting on; it
	// follows every replay, even if the client saw the prompt before.
	TypePendingPrompt = "pending_prompt"
	// TypeError reports a refused frame; the connection stays open.
	TypeError = "error"
)

// Why a bind reset the client's cursor (the code of a reset frame).
const (
	// ResetCursorAhead: the cursor is past the end of the log: the log lost
	// history it had (a store restored from an older copy, a memory store
	// that lost its pod), or the cursor is wrong.
	ResetCursorAhead = "cursor_ahead"
	// ResetLogChanged: the cursor belongs to another history of this
	// conversation name (deleted and created again, or a store emptied).
	ResetLogChanged = "log_changed"
)

// Durable event types (the "event" field of an event frame).
const (
	EventUserMessage      = "user_message"
	EventAssistantMessage = "assistant_message"
	EventPrompt           = "prompt"
	EventAnswer           = "answer"
	EventTurnFinished     = "turn_finished"
	EventFinished         = "finished"
	EventFailed           = "failed"
	// EventCheckpoint records an agent's own state; clients get it without
	// its data and ignore it.
	EventCheckpoint = "checkpoint"
	// EventStep records the result of an agent's journaled step (an LLM
	// call, a tool call); clients get it with the step's name only.
	EventStep = "step"
	// EventStepStarted records that an agent started a step it chose to
	// show (its name and a client-safe summary, e.g. "calling the refund
	// API"), so a UI can say so while the step runs. Data: StepData
	// (name, key, summary).
	EventStepStarted = "step_started"
	// EventReplayDiverged records that a turn run again after a move did
	// not repeat what it had recorded; from there it went on live. Data:
	// ReplayDivergedData.
	EventReplayDiverged = "replay_diverged"
)

// ClientFrame is a frame a client sends.
type ClientFrame struct {
	Type string `json:"type"`
	// ID is the client's id for a message or an answer; sending the same id
	// again (after a reconnect) applies it at most once and acks it again.
	ID string `json:"id,omitempty"`
	// Text of a message or an answer.
	Text string `json:"text,omitempty"`
	// PromptID names the prompt an answer answers, and PromptSeq, when
	// given, the exact one (the seq of its pending_prompt frame): an
	// answer is applied only to the question the human was shown.
	PromptID  string `json:"promptId,omitempty"`
	PromptSeq int64  `json:"promptSeq,omitempty"`
	// Decision on a review prompt (accept, edit, respond, ignore), with
	// the edited Args for edit and Text for respond.
	Decision string          `json:"decision,omitempty"`
	Args     json.RawMessage `json:"args,omitempty"`
	// Subject is who sent the frame, as the gateway authenticated it (the
	// SubjectHeader of the gateway's connection to the owner); never read
	// from the client's JSON.
	Subject string `json:"-"`
}

// SubjectHeader carries, on the gateway's connection to an owner, the
// subject its client authenticated as. Only the gateway can connect to an
// owner, so the owner trusts it: it scopes message ids to their subject and
// is recorded on user events.
const SubjectHeader = "Tether-Subject"

// RuntimeServerName is the name the serving certificate of the runtimes of
// namespace carries, and the one the gateway checks when it dials them over
// TLS: a certificate of one namespace's runtimes is worth nothing for
// another's.
func RuntimeServerName(namespace string) string { return "tether-runtime." + namespace }

// ServerFrame is a frame a server sends. Which fields are set depends on
// Type; the constructors below build each kind.
type ServerFrame struct {
	Type string `json:"type"`

	// Seq is the sequence number of an event, an acked message, or a
	// pending prompt's event.
	Seq int64 `json:"seq,omitempty"`
	// Event is a durable event's type.
	Event string `json:"event,omitempty"`
	// ID is the client id an event, ack or error refers to.
	ID string `json:"id,omitempty"`
	// Time of a durable event.
	Time *time.Time `json:"time,omitempty"`
	// Data is a durable event's payload.
	Data json.RawMessage `json:"data,omitempty"`

	// Text of a delta.
	Text string `json:"text,omitempty"`
	// Durable is false on deltas, to say they are not replayed.
	Durable *bool `json:"durable,omitempty"`
	// Duplicate marks the ack of a message that had already been applied.
	Duplicate bool `json:"duplicate,omitempty"`

	// Phase of a status frame. (Which pod owns the conversation is not
	// the client's business, and not told.)
	Phase string `json:"phase,omitempty"`

	// Complete, FirstSeq and LastSeq of a replay_complete frame: Complete
	// is false when history the client asked for was trimmed.
	Complete *bool `json:"complete,omitempty"`
	FirstSeq int64 `json:"firstSeq,omitempty"`
	LastSeq  int64 `json:"lastSeq,omitempty"`
	// Log names the history of a replay_complete or reset frame: a client
	// sends it back as the cursor's "log" parameter when it reconnects.
	Log string `json:"log,omitempty"`

	// Prompt is the pending prompt.
	Prompt *Prompt `json:"prompt,omitempty"`

	// Code and Message of an error (Message also explains a status).
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Prompt is a question the agent waits on.
type Prompt struct {
	ID      string   `json:"id"`
	Text    string   `json:"text"`
	Options []string `json:"options,omitempty"`
	// Review, when set, asks the human to review an action (a tool call)
	// rather than to pick an option.
	Review  *Review   `json:"review,omitempty"`
	AskedAt time.Time `json:"askedAt"`
}

// Review is a tool call put before a human, as human-in-the-loop inboxes
// show one: the action with its arguments, a Markdown description, and
// which decisions the human may take.
type Review struct {
	Action      string          `json:"action"`
	Args        json.RawMessage `json:"args,omitempty"`
	Description string          `json:"description,omitempty"`
	// Allowed decisions, among DecisionAccept, DecisionEdit,
	// DecisionRespond and DecisionIgnore.
	Allowed []string `json:"allowed"`
}

// A human's decision on a Review.
const (
	// DecisionAccept runs the action as proposed.
	DecisionAccept = "accept"
	// DecisionEdit runs it with the arguments the human edited (args).
	DecisionEdit = "edit"
	// DecisionRespond does not run it; text is the human's reply to the agent.
	DecisionRespond = "respond"
	// DecisionIgnore does not run it and says nothing.
	DecisionIgnore = "ignore"
)

// Decisions are every decision there is.
var Decisions = []string{DecisionAccept, DecisionEdit, DecisionRespond, DecisionIgnore}

// MaxArgsBytes bounds an action's arguments, proposed or edited.
const MaxArgsBytes = 16 << 10

// Payloads of durable events.
type (
	// TextData is the payload of user_message and assistant_message.
	TextData struct {
		Text string `json:"text"`
		// Subject is who sent a user message (empty for the initial input
		// and messages from the runtime's own API).
		Subject string `json:"subject,omitempty"`
	}
	// AnswerData is the payload of answer.
	AnswerData struct {
		PromptID string `json:"promptId"`
		// PromptSeq is the seq of the prompt event answered.
		PromptSeq int64  `json:"promptSeq,omitempty"`
		Text      string `json:"text,omitempty"`
		// Decision and Args of an answer to a review.
		Decision string          `json:"decision,omitempty"`
		Args     json.RawMessage `json:"args,omitempty"`
		// Subject is who answered.
		Subject string `json:"subject,omitempty"`
	}
	// StepData is the payload of step: the step's name, its idempotency
	// key and its result (never sent to clients).
	StepData struct {
		Name string `json:"name"`
		Key  string `json:"key,omitempty"`
		// Summary of a shown step: what clients see of it.
		Summary string          `json:"summary,omitempty"`
		Result  json.RawMessage `json:"result,omitempty"`
	}
	// ReplayDivergedData is the payload of replay_diverged: the recorded
	// event the replay expected, and what the agent did instead.
	ReplayDivergedData struct {
		RecordedSeq int64  `json:"recordedSeq"`
		Recorded    string `json:"recorded"`
		Got         string `json:"got"`
	}
	// OutcomeData is the payload of finished and failed.
	OutcomeData struct {
		Message string `json:"message,omitempty"`
	}
)

func boolPtr(b bool) *bool { return &b }

// EventFrame builds the frame of a durable event.
func EventFrame(seq int64, event, clientID string, at time.Time, data json.RawMessage) ServerFrame {
	return ServerFrame{Type: TypeEvent, Seq: seq, Event: event, ID: clientID, Time: &at, Data: data}
}

// DeltaFrame builds the frame of ephemeral output.
func DeltaFrame(text string) ServerFrame {
	return ServerFrame{Type: TypeDelta, Text: text, Durable: boolPtr(false)}
}

// AckFrame acknowledges client message id, durably appended as seq.
func AckFrame(id string, seq int64, duplicate bool) ServerFrame {
	return ServerFrame{Type: TypeAck, ID: id, Seq: seq, Duplicate: duplicate}
}

// StatusFrame tells the client where the conversation is.
func StatusFrame(phase, message string) ServerFrame {
	return ServerFrame{Type: TypeStatus, Phase: phase, Message: message}
}

// ReplayCompleteFrame ends a replay of history log.
func ReplayCompleteFrame(complete bool, firstSeq, lastSeq int64, log string) ServerFrame {
	return ServerFrame{Type: TypeReplayComplete, Complete: boolPtr(complete), FirstSeq: firstSeq, LastSeq: lastSeq, Log: log}
}

// ResetFrame starts a bind whose cursor did not name history log; code is
// ResetCursorAhead or ResetLogChanged.
func ResetFrame(code, log, message string) ServerFrame {
	return ServerFrame{Type: TypeReset, Code: code, Log: log, Message: message}
}

// PendingPromptFrame re-sends the pending prompt, recorded as event seq.
func PendingPromptFrame(p Prompt, seq int64) ServerFrame {
	return ServerFrame{Type: TypePendingPrompt, Prompt: &p, Seq: seq}
}

// ErrorFrame reports a refused frame; id is the client id it refers to, if
// any.
func ErrorFrame(code Code, id, message string) ServerFrame {
	return ServerFrame{Type: TypeError, Code: string(code), ID: id, Message: message}
}
