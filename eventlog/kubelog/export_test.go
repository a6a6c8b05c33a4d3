package kubelog

import "tether.dev/tether/eventlog"

// Queued is how many appends to k wait for the write in flight.
func (l *Log) Queued(k eventlog.Key) int {
	l.commits.mu.Lock()
	defer l.commits.mu.Unlock()
	return len(l.commits.queued[headKey(k)])
}
