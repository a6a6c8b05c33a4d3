package client

import "time"

// Backoff exposes the reconnect delay for attempt, for its bounds test.
func (c *Client) Backoff(attempt int) time.Duration { return c.backoff(attempt) }
