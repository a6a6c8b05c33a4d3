package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/internal/textlimit"
	"tether.dev/tether/protocol"
)

// loop runs turns one at a time, oldest user message first.
func (c *Conversation) loop(ctx context.Context) {
	for {
		select {
		case <-c.stopped:
			return
		case <-c.wake:
		}
		for {
			c.mu.Lock()
			if c.isStopped() {
				c.mu.Unlock()
				return
			}
			if c.running || len(c.st.turns) == 0 || c.st.finished || c.draining {
				c.mu.Unlock()
				break
			}
			// Whatever this turn already recorded (on a previous owner, or
			// here before the store failed) is replayed, not appended again.
			if c.dirty {
				if err := c.resyncLocked(ctx); err != nil {
					c.mu.Unlock()
					if !c.pause(retryPause) {
						return
					}
					continue
				}
			}
			c.replay = slices.Clone(c.st.turnEvents)
			first := c.st.turns[0]
			turnCtx, cancel := context.WithCancel(ctx)
			c.running, c.cancel = true, cancel
			c.mu.Unlock()

			c.runTurn(turnCtx, first)
			cancel()

			c.mu.Lock()
			c.running, c.cancel = false, nil
			if c.draining && !c.isStopped() {
				_ = c.publishLocked(ctx) // parked (Drain); a failure is retried by the next Drain
			}
			snap := c.snapshotDueLocked()
			c.mu.Unlock()
			if snap != nil {
				c.saveSnapshot(ctx, *snap)
			}
		}
	}
}

// retryPause is how long a turn waits before running again after the store
// failed, or the first time its agent's process was lost.
const retryPause = time.Second

// maxAgentLostPause bounds the pause before a turn whose agent's process was
// lost again and again runs again (it doubles from retryPause).
const maxAgentLostPause = 30 * time.Second

// pause waits d, or until the conversation stops (then it reports false).
func (c *Conversation) pause(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-c.stopped:
		return false
	}
}

// runTurn runs the handler for one user message and records how it ended.
func (c *Conversation) runTurn(ctx context.Context, input eventlog.Event) {
	var text protocol.TextData
	_ = json.Unmarshal(input.Data, &text)
	err := c.callHandler(ctx, &Turn{Conversation: c.cfg.Key, Input: text.Text, Seq: input.Seq, c: c})

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isStopped() {
		return
	}
	var end eventlog.Event
	if !errors.Is(err, ErrAgentLost) {
		c.agentLost = 0
	}
	switch {
	case err == nil, errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// Finished, or interrupted by a newer message (busyPolicy
		// Interrupt): either way this turn is over.
		data, _ := json.Marshal(map[string]bool{"interrupted": err != nil})
		end = eventlog.Event{Type: protocol.EventTurnFinished, Data: data}
	case errors.Is(err, ErrFinish):
		end = outcome(protocol.EventFinished, "")
	case errors.Is(err, ErrNotOwner):
		c.pending = nil
		return
	case errors.Is(err, ErrAgentLost):
		// Not the agent's failure: the turn runs again, from what its
		// log holds, once the pause is over (its unwritten output is made
		// again).
		c.dirty, c.pending = true, nil
		pause := min(retryPause<<min(c.agentLost, 5), maxAgentLostPause)
		c.agentLost++
		logf.FromContext(ctx).Info("the agent's process was lost; running the turn again", "conversation", c.cfg.Key.String(), "after", pause, "error", err.Error())
		go func() {
			if c.pause(pause) {
				c.signal()
			}
		}()
		return
	case errors.Is(err, errStoreUnavailable):
		// The store failed under the turn (an API server restart, say),
		// not the agent: the loop runs the turn again, in replay, once it
		// has read the log back (pausing while the store is still down).
		c.dirty, c.pending = true, nil
		logf.FromContext(ctx).Info("the event log failed during the turn; running the turn again", "conversation", c.cfg.Key.String(), "error", err.Error())
		return
	default:
		end = outcome(protocol.EventFailed, fmt.Sprintf("the agent failed: %v", err))
		// The event and the status keep a truncated message; the log
		// keeps all of it (an agent's traceback, say).
		logf.FromContext(ctx).Info("the agent failed: the conversation fails", "conversation", c.cfg.Key.String(), "error", err.Error())
	}
	if _, aerr := c.appendLocked(context.WithoutCancel(ctx), end); aerr != nil {
		// The store is failing; the turn is run again, in replay, by
		// whoever owns the conversation next, or here once it is back.
		go func() {
			if c.pause(retryPause) {
				c.signal()
			}
		}()
		return
	}
	_ = c.publishLocked(context.WithoutCancel(ctx))
	if end.Type == protocol.EventTurnFinished {
		c.signal()
	}
}

func outcome(event, message string) eventlog.Event {
	data, _ := json.Marshal(protocol.OutcomeData{Message: textlimit.Truncate(message, tetherv1alpha1.MaxConditionMessageLength)})
	return eventlog.Event{Type: event, Data: data}
}

// callHandler runs the handler, turning a panic into an error: an agent
// that crashes fails its conversation, never the runtime.
func (c *Conversation) callHandler(ctx context.Context, turn *Turn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return c.cfg.Handler.HandleTurn(ctx, turn)
}

// record records an agent event, or, while replaying a turn a previous
// owner started, reuses the event that owner recorded for the same call. The
// event is written (and shown to clients) with the turn's next durable
// point: a question, a step, a delta, the turn's end, a user message, or
// Turn.Flush.
func (c *Conversation) record(ctx context.Context, event string, data json.RawMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	recorded, err := c.replayLocked(ctx, callOf{event, data})
	if recorded != nil || err != nil {
		return err
	}
	return c.pendLocked(ctx, eventlog.Event{Type: event, Data: data})
}

// ask records a prompt (or finds the same one recorded), then returns the
// answer recorded for that very prompt or waits for a live one.
func (c *Conversation) ask(ctx context.Context, p PromptData) (protocol.AnswerData, error) {
	if err := validatePrompt(p); err != nil {
		return protocol.AnswerData{}, err
	}
	data, err := json.Marshal(p)
	if err != nil {
		return protocol.AnswerData{}, err
	}
	c.mu.Lock()
	recorded, err := c.replayLocked(ctx, callOf{protocol.EventPrompt, data})
	if err != nil {
		c.mu.Unlock()
		return protocol.AnswerData{}, err
	}
	var asked int64 // the seq of the question asked
	if recorded == nil {
		if asked, err = c.appendLocked(ctx, eventlog.Event{Type: protocol.EventPrompt, Data: data}); err != nil {
			c.mu.Unlock()
			return protocol.AnswerData{}, err
		}
		if err := c.publishLocked(ctx); err != nil && errors.Is(err, ErrNotOwner) {
			c.mu.Unlock()
			return protocol.AnswerData{}, err
		}
	} else if asked = recorded.Seq; len(c.replay) > 0 && c.replay[0].Type == protocol.EventAnswer {
		// The question is the one the human answered: their answer holds.
		answer := c.replay[0]
		c.replay = c.replay[1:]
		c.mu.Unlock()
		var a protocol.AnswerData
		_ = json.Unmarshal(answer.Data, &a)
		return a, nil
	}
	// Nothing the turn recorded waits unwritten while a human is asked.
	if err := c.flushLocked(ctx); err != nil {
		c.mu.Unlock()
		return protocol.AnswerData{}, err
	}
	c.waitingOn = asked
	if c.draining {
		_ = c.publishLocked(ctx) // parked (Drain)
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.waitingOn == asked {
			c.waitingOn = 0
		}
		c.mu.Unlock()
	}()
	for {
		select {
		case a := <-c.answers:
			if a.promptSeq == asked {
				return a.answer, nil
			}
			// An answer to an earlier question (one this turn, diverging,
			// did not ask again) is never applied to this one.
		case <-ctx.Done():
			return protocol.AnswerData{}, ctx.Err()
		case <-c.stopped:
			return protocol.AnswerData{}, ErrNotOwner
		}
	}
}

// MaxStepNameBytes bounds a step's name; MaxStepResultBytes its result;
// MaxStepSummaryBytes the summary clients see of a shown step.
const (
	MaxStepNameBytes    = 64
	MaxStepResultBytes  = 32 << 10
	MaxStepSummaryBytes = 256
)

// step runs fn once per conversation: its result is recorded before the turn
// goes on, and a replay of the turn returns the recorded result without
// running fn. n counts the steps of this name earlier in the turn.
func (c *Conversation) step(ctx context.Context, turnSeq int64, name string, n int, summary string, fn func(ctx context.Context, key string) (json.RawMessage, error)) (json.RawMessage, error) {
	if name == "" || len(name) > MaxStepNameBytes || strings.ContainsFunc(name, unicode.IsControl) {
		return nil, fmt.Errorf("step name %.80q: 1 to %d bytes, no control characters", name, MaxStepNameBytes)
	}
	if len(summary) > MaxStepSummaryBytes {
		return nil, fmt.Errorf("step %q: a summary is at most %d bytes", name, MaxStepSummaryBytes)
	}
	key := fmt.Sprintf("%s/%s/%d/%s/%d", c.cfg.Key.Namespace, c.cfg.Key.Name, turnSeq, name, n)
	call, _ := json.Marshal(protocol.StepData{Name: name, Key: key, Summary: summary})
	c.mu.Lock()
	var recorded *eventlog.Event
	var err error
	if summary != "" {
		// A shown step says so before it runs, once: a replay finds it.
		var started *eventlog.Event
		if started, err = c.replayLocked(ctx, callOf{protocol.EventStepStarted, call}); err == nil && started == nil {
			_, err = c.appendLocked(ctx, eventlog.Event{Type: protocol.EventStepStarted, Data: call})
		}
	}
	if err == nil {
		recorded, err = c.replayLocked(ctx, callOf{protocol.EventStep, call})
	}
	if err == nil && recorded == nil {
		// What the agent said before the step is shown while it runs.
		err = c.flushLocked(ctx)
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if recorded != nil {
		var d protocol.StepData
		if err := json.Unmarshal(recorded.Data, &d); err != nil {
			return nil, fmt.Errorf("the recorded result of step %q: %w", name, err)
		}
		return d.Result, nil
	}
	// Run live: at least once. If the owner is lost before the result is
	// recorded, the next owner runs the step again with the same key.
	result, err := fn(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(result) == 0 {
		result = json.RawMessage("null")
	}
	if len(result) > MaxStepResultBytes {
		return nil, fmt.Errorf("step %q returned %d bytes: a step's result is at most %d bytes (keep large data elsewhere and record a reference)", name, len(result), MaxStepResultBytes)
	}
	if !json.Valid(result) {
		return nil, fmt.Errorf("step %q returned a result that is not JSON", name)
	}
	data, _ := json.Marshal(protocol.StepData{Name: name, Key: key, Summary: summary, Result: result})
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.appendLocked(ctx, eventlog.Event{Type: protocol.EventStep, Data: data}); err != nil {
		return nil, err
	}
	return result, nil
}

// delta sends ephemeral output to the bound sockets.
func (c *Conversation) delta(ctx context.Context, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Recorded output comes before the delta that follows it, as it was
	// made. If it cannot be written now, the turn's next durable point
	// tries again.
	_ = c.flushLocked(ctx)
	c.broadcastLocked(protocol.DeltaFrame(text))
}

// validatePrompt holds an agent's question to the limits a Conversation's
// status accepts, so it fails the turn with a clear message instead of
// being refused by the API server later.
func validatePrompt(p PromptData) error {
	switch {
	case p.ID == "" || len(p.ID) > tetherv1alpha1.MaxPromptIDLength || strings.ContainsFunc(p.ID, notPromptIDRune):
		return fmt.Errorf("the agent asked a question with id %.80q: ids are 1 to %d of [A-Za-z0-9._:-]", p.ID, tetherv1alpha1.MaxPromptIDLength)
	case p.Text == "" || len(p.Text) > tetherv1alpha1.MaxPromptTextLength:
		return fmt.Errorf("the agent asked a question of %d bytes: questions are 1 to %d bytes", len(p.Text), tetherv1alpha1.MaxPromptTextLength)
	case len(p.Options) > tetherv1alpha1.MaxPromptOptions:
		return fmt.Errorf("the agent offered %d options: at most %d", len(p.Options), tetherv1alpha1.MaxPromptOptions)
	}
	for _, o := range p.Options {
		if o == "" || len(o) > tetherv1alpha1.MaxPromptOptionLength {
			return fmt.Errorf("the agent offered an option of %d bytes: options are 1 to %d bytes", len(o), tetherv1alpha1.MaxPromptOptionLength)
		}
	}
	if r := p.Review; r != nil {
		switch {
		case len(p.Options) > 0:
			return fmt.Errorf("the agent asked for a review with options: a review's answers are its allowed decisions")
		case r.Action == "" || len(r.Action) > MaxActionBytes:
			return fmt.Errorf("a review's action is 1 to %d bytes", MaxActionBytes)
		case len(r.Args) > protocol.MaxArgsBytes || (len(r.Args) > 0 && !json.Valid(r.Args)):
			return fmt.Errorf("a review's args are JSON of at most %d bytes", protocol.MaxArgsBytes)
		case len(r.Description) > MaxDescriptionBytes:
			return fmt.Errorf("a review's description is at most %d bytes", MaxDescriptionBytes)
		case len(r.Allowed) == 0:
			return fmt.Errorf("a review allows at least one of %v", protocol.Decisions)
		}
		for _, d := range r.Allowed {
			if !slices.Contains(protocol.Decisions, d) {
				return fmt.Errorf("a review allows %.20q: decisions are %v", d, protocol.Decisions)
			}
		}
	}
	return nil
}

// MaxActionBytes bounds a review's action name; MaxDescriptionBytes its
// Markdown description.
const (
	MaxActionBytes      = 64
	MaxDescriptionBytes = 4 << 10
)

// notPromptIDRune reports a rune outside [A-Za-z0-9._:-].
func notPromptIDRune(r rune) bool {
	allowed := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-", r)
	return !allowed
}
