package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

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
			if c.running || len(c.st.turns) == 0 || c.st.finished {
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
			c.mu.Unlock()
		}
	}
}

// retryPause is how long a turn waits before running again after the store
// failed.
const retryPause = time.Second

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
	switch {
	case err == nil, errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// Finished, or interrupted by a newer message (busyPolicy
		// Interrupt): either way this turn is over.
		data, _ := json.Marshal(map[string]bool{"interrupted": err != nil})
		end = eventlog.Event{Type: protocol.EventTurnFinished, Data: data}
	case errors.Is(err, ErrFinish):
		end = outcome(protocol.EventFinished, "")
	case errors.Is(err, ErrNotOwner):
		return
	default:
		end = outcome(protocol.EventFailed, fmt.Sprintf("the agent failed: %v", err))
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

// record appends an agent event, or, while replaying a turn a previous owner
// started, matches it with the event that owner recorded.
func (c *Conversation) record(ctx context.Context, event string, data json.RawMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.matchReplayLocked(event) != nil {
		return nil
	}
	_, err := c.appendLocked(ctx, eventlog.Event{Type: event, Data: data})
	return err
}

// matchReplayLocked consumes the next recorded event if it is of type event.
// A replay that diverges (a handler that is not deterministic) is dropped,
// and the turn goes on live from there.
func (c *Conversation) matchReplayLocked(event string) *eventlog.Event {
	if len(c.replay) == 0 {
		return nil
	}
	next := c.replay[0]
	if next.Type != event {
		c.replay = nil
		return nil
	}
	c.replay = c.replay[1:]
	return &next
}

// ask records a prompt (or finds the recorded one), then returns the
// recorded answer or waits for a live one.
func (c *Conversation) ask(ctx context.Context, p PromptData) (string, error) {
	if err := validatePrompt(p); err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.matchReplayLocked(protocol.EventPrompt) == nil {
		data, err := json.Marshal(p)
		if err != nil {
			c.mu.Unlock()
			return "", err
		}
		if _, err := c.appendLocked(ctx, eventlog.Event{Type: protocol.EventPrompt, Data: data}); err != nil {
			c.mu.Unlock()
			return "", err
		}
		if err := c.publishLocked(ctx); err != nil && errors.Is(err, ErrNotOwner) {
			c.mu.Unlock()
			return "", err
		}
	}
	if recorded := c.matchReplayLocked(protocol.EventAnswer); recorded != nil {
		c.mu.Unlock()
		var a protocol.AnswerData
		_ = json.Unmarshal(recorded.Data, &a)
		return a.Text, nil
	}
	c.mu.Unlock()
	select {
	case answer := <-c.answers:
		return answer, nil
	case <-ctx.Done():
		return "", ctx.Err()
	case <-c.stopped:
		return "", ErrNotOwner
	}
}

// delta sends ephemeral output to the bound sockets.
func (c *Conversation) delta(text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	return nil
}

// notPromptIDRune reports a rune outside [A-Za-z0-9._:-].
func notPromptIDRune(r rune) bool {
	allowed := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-", r)
	return !allowed
}
