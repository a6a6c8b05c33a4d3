package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/protocol"
)

// Handler is an agent written in Go: it handles one turn, started by a user
// message, and may send messages, stream deltas, ask a human and wait for
// the answer, and checkpoint state, all through the Turn. It must be
// deterministic given the conversation's events (see the package doc).
type Handler interface {
	HandleTurn(ctx context.Context, turn *Turn) error
}

// Forgetter is implemented by handlers that keep something per
// conversation (a process, a connection): Forget is called when this owner
// stops running the conversation.
type Forgetter interface {
	Forget(key eventlog.Key)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, turn *Turn) error

// HandleTurn implements Handler.
func (f HandlerFunc) HandleTurn(ctx context.Context, turn *Turn) error { return f(ctx, turn) }

// ErrFinish is what a handler returns (wrapped or not) to end the conversation
// as Succeeded after this turn.
var ErrFinish = errors.New("conversation finished")

// ErrAgentLost is what a handler returns (wrapped) when the agent's process
// was lost through no doing of its own: the container it ran in stopped or
// restarted (its pod going away, say). The conversation does not fail: the
// turn runs again from its start in a new process, after a pause, replaying
// what it recorded, as it would on another pod after a move.
var ErrAgentLost = errors.New("the agent's process was lost")

// Turn is a handler's view of the turn it runs.
type Turn struct {
	// Conversation names the conversation.
	Conversation eventlog.Key
	// Input is the user message that started the turn.
	Input string
	// Seq is the user message's sequence number.
	Seq int64

	c     *Conversation
	steps map[string]int // steps run so far, by name
}

// ErrOutputTooLarge is returned for a message or a delta over its limit
// (protocol.MaxAgentTextEncodedBytes, protocol.MaxDeltaEncodedBytes): it
// would be refused downstream every time, so it is refused here, clearly.
var ErrOutputTooLarge = errors.New("agent output over its limit")

// Send records a message from the agent: its text is at most
// protocol.MaxAgentTextEncodedBytes as JSON (ErrOutputTooLarge). It is
// written, and shown to clients, with the turn's next durable point (a
// question, a step, a delta, the turn's end, or Flush), in the same write.
func (t *Turn) Send(ctx context.Context, text string) error {
	if n := protocol.EncodedTextLen(text); n > protocol.MaxAgentTextEncodedBytes {
		return fmt.Errorf("%w: a message of %d bytes as JSON; the limit is %d", ErrOutputTooLarge, n, protocol.MaxAgentTextEncodedBytes)
	}
	data, _ := json.Marshal(map[string]string{"text": text})
	return t.c.record(ctx, protocol.EventAssistantMessage, data)
}

// Delta streams ephemeral output to the bound sockets; it is not durable and
// not replayed (Send the whole text when it is complete). One delta is at
// most protocol.MaxDeltaEncodedBytes as JSON (ErrOutputTooLarge): stream
// long output in pieces.
func (t *Turn) Delta(text string) error {
	if n := protocol.EncodedTextLen(text); n > protocol.MaxDeltaEncodedBytes {
		return fmt.Errorf("%w: a delta of %d bytes as JSON; the limit is %d", ErrOutputTooLarge, n, protocol.MaxDeltaEncodedBytes)
	}
	t.c.delta(context.Background(), text)
	return nil
}

// Flush writes what the turn recorded and has not written yet (Send and
// Checkpoint are written with the turn's next durable point: a question, a
// step, a delta, its end): a handler that works a long while after Send
// without a step calls it so the message is shown meanwhile.
func (t *Turn) Flush(ctx context.Context) error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.c.flushLocked(ctx)
}

// Ask records a question for a human and waits for the answer. options, when
// given, are the only answers accepted. The conversation is AwaitingInput
// until the answer is durably recorded.
func (t *Turn) Ask(ctx context.Context, id, text string, options ...string) (string, error) {
	a, err := t.c.ask(ctx, PromptData{ID: id, Text: text, Options: options})
	return a.Text, err
}

// Review puts an action (a tool call with its arguments) before a human,
// with text as the question and review saying what may be decided, and
// waits for the decision: accept, edit (Args holds the edited arguments),
// respond (Text holds the human's reply) or ignore, among review.Allowed.
// Replayed like Ask: a recorded decision is returned only for the very
// same review.
func (t *Turn) Review(ctx context.Context, id, text string, review protocol.Review) (Decision, error) {
	a, err := t.c.ask(ctx, PromptData{ID: id, Text: text, Review: &review})
	return Decision{Decision: a.Decision, Args: a.Args, Text: a.Text}, err
}

// Decision is a human's decision on a Review.
type Decision struct {
	Decision string
	Args     json.RawMessage
	Text     string
}

// Step runs fn (an LLM call, a tool call, any side effect) as a journaled
// step: its result is durably recorded before Step returns, and when the
// turn is run again after a move, Step returns the recorded result and fn
// does not run. A step that was running when its owner was lost (no result
// recorded yet) runs again: fn runs at least once, and what the turn records
// after it exactly once. key is the same on every run of the same step
// (conversation, turn, name, and how many steps of that name came before in
// the turn): hand it to the side effect as an idempotency key. The result is
// JSON of at most MaxStepResultBytes.
//
// Steps are the agent's own business: clients see that a step of that name
// ran, nothing more, unless the step is shown (Shown): then clients also
// see a step_started event with its summary before it runs, and the summary
// with its result, so a UI can say "calling the refund API...".
func (t *Turn) Step(ctx context.Context, name string, fn func(ctx context.Context, key string) (json.RawMessage, error), opts ...StepOption) (json.RawMessage, error) {
	if t.steps == nil {
		t.steps = map[string]int{}
	}
	var o stepOptions
	for _, opt := range opts {
		opt(&o)
	}
	n := t.steps[name]
	t.steps[name]++
	return t.c.step(ctx, t.Seq, name, n, o.summary, fn)
}

// StepOption changes how a step is recorded.
type StepOption func(*stepOptions)

type stepOptions struct{ summary string }

// Shown shows the step to clients with summary, a text safe for them to
// read (at most MaxStepSummaryBytes): never the step's arguments or result
// unless they are.
func Shown(summary string) StepOption { return func(o *stepOptions) { o.summary = summary } }

// StepOf is Turn.Step for a result of any JSON type.
func StepOf[T any](ctx context.Context, t *Turn, name string, fn func(ctx context.Context, key string) (T, error), opts ...StepOption) (T, error) {
	var out T
	raw, err := t.Step(ctx, name, func(ctx context.Context, key string) (json.RawMessage, error) {
		v, err := fn(ctx, key)
		if err != nil {
			return nil, err
		}
		return json.Marshal(v)
	}, opts...)
	if err != nil {
		return out, err
	}
	return out, json.Unmarshal(raw, &out)
}

// MaxHistoryEvents bounds the events History returns: the newest ones.
const MaxHistoryEvents = 500

// History returns the conversation's durable events before this turn (user
// messages, the agent's messages, questions and answers, step results,
// checkpoints), oldest first: at most MaxHistoryEvents, the newest ones.
// complete is false when older events exist that it left out or that
// retention trimmed. An agent rebuilds its context from it after a move;
// this turn's own events come back through replay, not here.
func (t *Turn) History(ctx context.Context) (events []eventlog.Event, complete bool, err error) {
	return t.c.history(ctx, t.Seq)
}

// Checkpoint records state the handler wants to keep; LastCheckpoint reads
// the newest one back, on this owner or the next.
func (t *Turn) Checkpoint(ctx context.Context, state any) error {
	data, err := json.Marshal(state)
	if err != nil {
		return err
	}
	return t.c.record(ctx, protocol.EventCheckpoint, data)
}

// LastCheckpoint decodes the newest checkpoint into state and reports
// whether there was one.
func (t *Turn) LastCheckpoint(state any) (bool, error) {
	data := t.c.lastCheckpoint()
	if data == nil {
		return false, nil
	}
	return true, json.Unmarshal(data, state)
}
