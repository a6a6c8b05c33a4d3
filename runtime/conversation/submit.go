package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/protocol"
)

// Submit applies a client's message or answer at most once and returns its
// ack, sent only once the frame is durable. A frame already applied (the
// same client id) is acknowledged again with the same sequence number. A
// refused frame returns a *protocol.Error and changes nothing; ErrNotOwner
// means the conversation moved.
func (c *Conversation) Submit(ctx context.Context, f protocol.ClientFrame) (protocol.ServerFrame, error) {
	if err := f.Validate(); err != nil {
		return protocol.ServerFrame{}, err
	}
	var waiting *waitingMessage
	if f.Type == protocol.TypeMessage {
		// While the lock is held by a write, the next write may take
		// this message along (groupcommit.go).
		waiting = &waitingMessage{ctx: ctx, frame: f, event: messageEvent(f)}
		c.inbox.add(waiting)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if waiting != nil && !c.inbox.remove(waiting) {
		if waiting.err != nil {
			return protocol.ServerFrame{}, waiting.err
		}
		return protocol.AckFrame(f.ID, waiting.seq, false), nil
	}
	if c.isStopped() {
		return protocol.ServerFrame{}, ErrNotOwner
	}
	if seq, ok := c.st.applied[appliedKey(f.Subject, f.ID)]; ok {
		return protocol.AckFrame(f.ID, seq, true), nil
	}
	if c.dirty {
		// The last append's outcome is unknown; this frame may be it.
		if err := c.resyncLocked(ctx); err != nil {
			return protocol.ServerFrame{}, unavailable(err)
		}
		if seq, ok := c.st.applied[appliedKey(f.Subject, f.ID)]; ok {
			return protocol.AckFrame(f.ID, seq, true), nil
		}
	}
	if c.st.finished {
		return protocol.ServerFrame{}, &protocol.Error{Code: protocol.CodeFinished, Message: "the conversation is over"}
	}
	switch f.Type {
	case protocol.TypeMessage:
		return c.messageLocked(ctx, f)
	case protocol.TypeAnswer:
		return c.answerLocked(ctx, f)
	}
	return protocol.ServerFrame{}, &protocol.Error{Code: protocol.CodeUnknownType, Message: "only messages and answers are submitted"}
}

func (c *Conversation) messageLocked(ctx context.Context, f protocol.ClientFrame) (protocol.ServerFrame, error) {
	busy := c.running || len(c.st.turns) > 0
	if busy {
		switch c.cfg.BusyPolicy {
		case tetherv1alpha1.BusyPolicyReject:
			return protocol.ServerFrame{}, &protocol.Error{Code: protocol.CodeBusy, Message: "a turn is running; send again when it has finished"}
		case tetherv1alpha1.BusyPolicyInterrupt:
		default:
			// The running turn is not counted as queued.
			if queued := len(c.st.turns) - 1; queued >= c.cfg.MaxQueued {
				return protocol.ServerFrame{}, &protocol.Error{Code: protocol.CodeQueueFull, Message: "too many messages are waiting for the running turn"}
			}
		}
	}
	seq, err := c.appendLocked(ctx, messageEvent(f))
	if err != nil {
		return protocol.ServerFrame{}, unavailable(err)
	}
	if busy && c.cfg.BusyPolicy == tetherv1alpha1.BusyPolicyInterrupt && c.cancel != nil {
		c.cancel()
	}
	c.signal()
	return protocol.AckFrame(f.ID, seq, false), nil
}

func (c *Conversation) answerLocked(ctx context.Context, f protocol.ClientFrame) (protocol.ServerFrame, error) {
	p := c.st.prompt
	switch {
	case p == nil:
		return protocol.ServerFrame{}, &protocol.Error{Code: protocol.CodeNoPendingPrompt, Message: "no question is waiting for an answer"}
	case p.ID != f.PromptID:
		return protocol.ServerFrame{}, &protocol.Error{Code: protocol.CodePromptMismatch, Message: "the pending question is " + p.ID + ", not the one answered"}
	case f.PromptSeq != 0 && f.PromptSeq != c.st.promptSeq:
		// Same id, another question (a turn that diverged asked anew): the
		// human did not see this one.
		return protocol.ServerFrame{}, &protocol.Error{Code: protocol.CodePromptMismatch, Message: fmt.Sprintf("the pending question %s is the one at seq %d, not the one answered", p.ID, c.st.promptSeq)}
	case len(p.Options) > 0 && !slices.Contains(p.Options, f.Text):
		return protocol.ServerFrame{}, &protocol.Error{Code: protocol.CodeInvalidOption, Message: "the answer is not one of the question's options"}
	case p.Review == nil && f.Decision != "":
		return protocol.ServerFrame{}, &protocol.Error{Code: protocol.CodeInvalidOption, Message: "the question is not a review: answer with text"}
	case p.Review != nil && !slices.Contains(p.Review.Allowed, f.Decision):
		return protocol.ServerFrame{}, &protocol.Error{Code: protocol.CodeInvalidOption,
			Message: fmt.Sprintf("the question reviews %s: decide one of %v", p.Review.Action, p.Review.Allowed)}
	case f.Decision == protocol.DecisionEdit && !isObject(f.Args):
		return protocol.ServerFrame{}, &protocol.Error{Code: protocol.CodeBadFrame, Message: "an edit's args are the action's arguments, a JSON object"}
	}
	promptSeq := c.st.promptSeq
	answer := protocol.AnswerData{PromptID: f.PromptID, PromptSeq: promptSeq, Text: f.Text, Decision: f.Decision, Args: f.Args, Subject: f.Subject}
	data, _ := json.Marshal(answer)
	seq, err := c.appendLocked(ctx, eventlog.Event{Type: protocol.EventAnswer, ClientID: f.ID, Data: data})
	if err != nil {
		return protocol.ServerFrame{}, unavailable(err)
	}
	if a := (answerFor{promptSeq: promptSeq, answer: answer}); c.draining && c.waitingOn == promptSeq {
		c.withheld = &a // the next owner hands it over (Drain)
	} else {
		c.handLocked(a)
	}
	_ = c.publishLocked(ctx)
	return protocol.AckFrame(f.ID, seq, false), nil
}

// unavailable turns a failed append into what the client is told: moved, or
// not applied (send again).
func unavailable(err error) error {
	if errors.Is(err, ErrNotOwner) {
		return ErrNotOwner
	}
	var perr *protocol.Error
	switch {
	case errors.As(err, &perr):
		return perr
	case errors.Is(err, eventlog.ErrTooLarge):
		// Refused for good: never "send it again".
		return &protocol.Error{Code: protocol.CodeTooLarge, Message: "not applied: the event would be over the event log's size limit"}
	case errors.Is(err, eventlog.ErrInvalid):
		return &protocol.Error{Code: protocol.CodeBadFrame, Message: "not applied: the event log refuses it"}
	}
	return &protocol.Error{Code: protocol.CodeUnavailable, Message: "not applied: the event log is unavailable; send it again"}
}

// Subscription is a socket bound to the conversation: its replay, then live
// frames on C until it is closed (Code and Reason say why).
type Subscription struct {
	// C carries live frames; it is closed when the subscription ends. A
	// frame is shared by every subscriber: read it, never change it. (The
	// channel holds pointers so that its buffer costs 8 bytes a slot, not
	// a whole frame (216 bytes): an idle socket's queue is 2 KiB, not 54.)
	C      chan *protocol.ServerFrame
	Code   int
	Reason string

	c      *Conversation
	closed bool

	// The replay (see Replay): head (a reset frame), the events in
	// (after, upTo], read a page at a time, then tail (replay_complete and
	// the pending prompt). page is the first page, read before the socket
	// is upgraded so that a hole is refused with 503; pageHeld is what it
	// holds of the replay budget.
	head, tail  []protocol.ServerFrame
	after, upTo int64
	page        []eventlog.Event
	pageHeld    int64
}

// Subscribe binds a socket that has seen every event up to cursor.After of
// history cursor.Log. Its replay (Replay) ends exactly where its live frames
// begin, so it sees every event once, in order. A cursor that does not
// name this history, or that is past its end, is never honoured: the
// replay starts with a reset frame saying so and then replays the history
// from its start. At most Config.MaxSubscribers sockets bind at once
// (ErrTooManySubscribers).
func (c *Conversation) Subscribe(ctx context.Context, cursor protocol.Cursor) (*Subscription, error) {
	s, err := c.subscribe(ctx, cursor)
	if err != nil {
		return nil, err
	}
	// The first page, outside the lock: a hole or a store that is down is
	// refused before the socket is upgraded.
	if s.after < s.upTo {
		if s.page, s.pageHeld, err = s.readPage(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (c *Conversation) subscribe(ctx context.Context, cursor protocol.Cursor) (*Subscription, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isStopped() {
		return nil, ErrNotOwner
	}
	if c.cfg.MaxSubscribers > 0 && len(c.subs) >= c.cfg.MaxSubscribers {
		return nil, ErrTooManySubscribers
	}
	bounds, err := c.boundsLocked(ctx)
	if err != nil {
		return nil, err
	}
	s := &Subscription{C: make(chan *protocol.ServerFrame, c.cfg.SubscriberBuffer), c: c}
	s.after, s.upTo = cursor.After, c.st.last
	if code, message := checkCursor(cursor, bounds.LogID, c.st.last); code != "" {
		s.head = append(s.head, protocol.ResetFrame(code, bounds.LogID, message))
		s.after = 0
	}
	s.tail = append(s.tail, protocol.ReplayCompleteFrame(bounds.Complete(s.after), bounds.FirstSeq, c.st.last, bounds.LogID))
	if p := c.st.prompt; p != nil {
		s.tail = append(s.tail, protocol.PendingPromptFrame(protocol.Prompt{ID: p.ID, Text: p.Text, Options: p.Options, Review: p.Review, AskedAt: c.promptTime()}, c.st.promptSeq))
	}
	c.subs[s] = struct{}{}
	if len(c.subs) == 1 {
		go c.publishAttachment() //nolint:gosec // outlives the request that bound the socket, on purpose
	}
	return s, nil
}

// boundsLocked is the history a bound socket is told of: what this owner
// knows, with no request to the store (a moved client's bind waits on it,
// under the conversation's lock), unless a trim's outcome or the log's
// identity is unknown. Its last sequence number is not used: a socket is
// replayed up to the last event this owner applied.
func (c *Conversation) boundsLocked(ctx context.Context) (eventlog.Bounds, error) {
	if !c.firstUnknown && c.logID != "" {
		return eventlog.Bounds{FirstSeq: c.first, LastSeq: c.st.last, Epoch: c.cfg.Epoch, LogID: c.logID}, nil
	}
	bounds, err := c.cfg.Log.Bounds(ctx, c.cfg.Key)
	if err != nil {
		return eventlog.Bounds{}, err
	}
	if c.firstUnknown && bounds.LogID == c.logID {
		c.first, c.firstUnknown = max(c.first, bounds.FirstSeq), false
	}
	return bounds, nil
}

// checkCursor says why a cursor cannot be honoured against the history
// logID that ends at last, or returns no code if it can.
func checkCursor(cursor protocol.Cursor, logID string, last int64) (code, message string) {
	switch {
	case cursor.Log != "" && logID != "" && cursor.Log != logID:
		return protocol.ResetLogChanged, "your cursor belongs to another history of this conversation (it was deleted and created again, or its store was emptied): replaying from the start"
	case cursor.After > last:
		return protocol.ResetCursorAhead, fmt.Sprintf("your cursor %d is past the end of the history (%d): replaying from the start", cursor.After, last)
	}
	return "", ""
}

// Close unbinds the subscription.
func (s *Subscription) Close() {
	s.release(s.pageHeld) // a first page never replayed
	s.page, s.pageHeld = nil, 0
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.closeLocked(protocol.CloseNormal, "")
}

func (s *Subscription) closeLocked(code int, reason string) {
	if s.closed {
		return
	}
	s.closed, s.Code, s.Reason = true, code, reason
	close(s.C)
	delete(s.c.subs, s)
	if len(s.c.subs) == 0 && !s.c.isStopped() {
		s.c.detachedAt = s.c.cfg.Now()
		go s.c.publishAttachment()
	}
}

// broadcastLocked queues a frame for every bound socket; one that cannot
// keep up is closed as a slow consumer and resumes after reconnecting.
func (c *Conversation) broadcastLocked(frame protocol.ServerFrame) {
	if len(c.subs) == 0 {
		return
	}
	f := &frame
	for s := range c.subs {
		select {
		case s.C <- f:
		default:
			s.closeLocked(protocol.CloseSlowConsumer, "too slow: reconnect and resume")
		}
	}
}

// isObject reports whether data is a JSON object.
func isObject(data json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(data, &m) == nil && m != nil
}
