package conversation

import "context"

// A drained owner pod (tether.dev/drain) gives its conversations up one at a
// time, each at a turn boundary, so that a move never cuts a turn short: an
// LLM agent's turn run again is not the same turn. The controller marks the
// owner draining, the owner parks the conversation once no turn runs (or the
// running one waits on a human) and says so in the status, and only then does
// the controller move it. A parked conversation still takes messages and
// answers, durably and acknowledged; their turns run on the next owner.

// Drain starts (on) or stops draining the conversation. While draining no
// turn starts, and an answer is recorded and acknowledged but not handed to
// the turn waiting on it: the next owner hands it over in replay. Once at a
// boundary the status says Parked. Stopping a drain hands a withheld answer
// over and lets turns run again. It publishes the status when Parked changes;
// calling it again after a failed write retries that write.
func (c *Conversation) Drain(ctx context.Context, on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isStopped() || c.draining == on && (c.published == nil || c.published.Parked == c.parkedLocked()) {
		return nil // nothing new to say (the owner's reconciles call it on every change)
	}
	if c.draining != on {
		c.draining = on
		if !on {
			if a := c.withheld; a != nil {
				c.withheld = nil
				c.handLocked(*a)
			}
			c.signal()
		}
	}
	return c.publishLocked(ctx)
}

// parkedLocked reports whether the conversation is draining and at a turn
// boundary.
func (c *Conversation) parkedLocked() bool {
	return c.draining && !c.st.finished && (!c.running || c.waitingOn != 0)
}

// handLocked hands an answer to the turn waiting on it, replacing an earlier
// one nobody took.
func (c *Conversation) handLocked(a answerFor) {
	if a.promptSeq == c.waitingOn {
		c.waitingOn = 0 // the turn goes on from here
	}
	select {
	case <-c.answers:
	default:
	}
	c.answers <- a
}
