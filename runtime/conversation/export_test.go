package conversation

// Waiting is how many clients' messages wait for the conversation's lock.
func (c *Conversation) Waiting() int {
	c.inbox.mu.Lock()
	defer c.inbox.mu.Unlock()
	return len(c.inbox.waiting)
}
