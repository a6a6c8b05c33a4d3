package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/protocol"
)

// Group commit of clients' messages. A message submitted while the
// conversation is busy writing (another client's message, an answer, the
// running turn's output) waits for the conversation's lock; the next append
// made under that lock, whoever makes it, takes the waiting messages along
// in the same write, in the order they arrived, and each submitter returns
// its own acknowledgement without a write of its own. There is no timer: a
// message that finds nothing in flight is written at once, alone, and every
// acknowledgement is still sent only once its own message is durable.
//
// A waiting message is taken along only when it would be accepted just as
// it is now: not a duplicate, valid for the store, within the Agent's busy
// policy and queue, and fitting in the same append. Anything else is left
// to its own submitter, which goes the usual way once it has the lock (and
// is refused, or acknowledged as a duplicate, as before).

// errUnknownOutcome: a message taken along landed, as far as the store
// said, but this owner could not read the log back to learn its sequence
// number.
var errUnknownOutcome = errors.New("the write landed but could not be read back")

// waitingMessage is a client's message waiting for the conversation's lock.
type waitingMessage struct {
	ctx   context.Context
	frame protocol.ClientFrame
	event eventlog.Event

	// Set by the appender that took it along, under c.mu.
	taken bool
	seq   int64
	err   error
}

// inbox holds the messages waiting for the lock, in the order they came.
type inbox struct {
	mu      sync.Mutex
	waiting []*waitingMessage
}

func (b *inbox) add(m *waitingMessage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.waiting = append(b.waiting, m)
}

// remove takes m out of the inbox; it reports false if an appender took it
// along already (its result is set).
func (b *inbox) remove(m *waitingMessage) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.taken {
		return false
	}
	b.waiting = slices.DeleteFunc(b.waiting, func(w *waitingMessage) bool { return w == m })
	return true
}

// messageEvent is the event that records a client's message.
func messageEvent(f protocol.ClientFrame) eventlog.Event {
	data, _ := json.Marshal(protocol.TextData{Text: f.Text, Subject: f.Subject})
	return eventlog.Event{Type: protocol.EventUserMessage, ClientID: f.ID, Data: data}
}

// takeWaitingLocked takes along the waiting messages that would be accepted
// as they are now after events, as many as fit in one append with them.
func (c *Conversation) takeWaitingLocked(events []eventlog.Event) []*waitingMessage {
	c.inbox.mu.Lock()
	defer c.inbox.mu.Unlock()
	if len(c.inbox.waiting) == 0 || c.st.finished {
		return nil
	}
	// What the append already holds: its messages make the conversation
	// busy and fill the queue; an end leaves no room for more.
	messages := 0
	ids := map[string]bool{}
	for _, e := range events {
		switch e.Type {
		case protocol.EventFinished, protocol.EventFailed:
			return nil
		case protocol.EventUserMessage:
			messages++
		}
		if e.ClientID != "" {
			ids[appliedKey(subjectOf(e), e.ClientID)] = true
		}
	}
	var taken []*waitingMessage
	batch := slices.Clip(events)
	for _, m := range c.inbox.waiting {
		key := appliedKey(m.frame.Subject, m.frame.ID)
		if _, dup := c.st.applied[key]; dup || ids[key] {
			continue
		}
		if busy := c.running || len(c.st.turns)+messages > 0; busy {
			switch c.cfg.BusyPolicy {
			case tetherv1alpha1.BusyPolicyReject:
				continue
			case tetherv1alpha1.BusyPolicyInterrupt:
			default:
				// As messageLocked counts: the running turn is not queued.
				if queued := len(c.st.turns) + messages - 1; queued >= c.cfg.MaxQueued {
					continue
				}
			}
		}
		if eventlog.ValidateAppend(c.cfg.Epoch, []eventlog.Event{m.event}) != nil || !fitsOneAppend(batch, []eventlog.Event{m.event}) {
			continue
		}
		batch = append(batch, m.event)
		ids[key] = true
		messages++
		taken = append(taken, m)
	}
	if len(taken) > 0 {
		c.inbox.waiting = slices.DeleteFunc(c.inbox.waiting, func(w *waitingMessage) bool { return slices.Contains(taken, w) })
	}
	for _, m := range taken {
		m.taken = true
	}
	return taken
}

// settleTakenLocked gives each message taken along its outcome: the
// sequence number its event got, or the append's error.
func (c *Conversation) settleTakenLocked(taken []*waitingMessage, err error) {
	if len(taken) == 0 {
		return
	}
	for _, m := range taken {
		if err != nil {
			m.err = unavailable(err)
			continue
		}
		seq, ok := c.st.applied[appliedKey(m.frame.Subject, m.frame.ID)]
		if !ok {
			// Landed, but this owner could not read it back yet: the
			// client sends it again and has it acknowledged as a
			// duplicate.
			m.err = unavailable(errUnknownOutcome)
			continue
		}
		m.seq = seq
	}
	if err == nil {
		if c.cfg.BusyPolicy == tetherv1alpha1.BusyPolicyInterrupt && c.cancel != nil {
			c.cancel()
		}
		c.signal()
	}
}
