// Package memory is an in-memory event log for development and unit tests.
//
// It does NOT survive the loss of its process: when the pod that holds it
// dies, every conversation's history is gone. Use the kube or redis backend
// for anything that must survive a pod.
package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"tether.dev/tether/eventlog"
)

// Warning is what a runtime logs when it starts with this backend.
const Warning = "the memory event log does not survive the loss of this pod: conversations lose their history when it dies"

// Log keeps every conversation's events in memory.
type Log struct {
	mu    sync.Mutex
	now   func() time.Time
	convs map[eventlog.Key]*conversation
}

type conversation struct {
	id     string
	epoch  int64
	first  int64 // seq of events[0]
	last   int64
	events []eventlog.Event
	snap   *eventlog.Snapshot // the newest snapshot kept, if any
}

// New returns an empty log.
func New() *Log {
	return &Log{now: time.Now, convs: map[eventlog.Key]*conversation{}}
}

var _ eventlog.Log = (*Log)(nil)

func key(k eventlog.Key) eventlog.Key { return eventlog.Key{Namespace: k.Namespace, Name: k.Name} }

// Claim implements eventlog.Log.
func (l *Log) Claim(_ context.Context, k eventlog.Key, epoch int64) (eventlog.Bounds, error) {
	if err := eventlog.ValidateClaim(epoch); err != nil {
		return eventlog.Bounds{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c, err := l.claimLocked(k, epoch)
	if err != nil {
		return eventlog.Bounds{}, err
	}
	return c.bounds(), nil
}

// claimLocked creates k's log if needed and raises its epoch.
func (l *Log) claimLocked(k eventlog.Key, epoch int64) (*conversation, error) {
	c, ok := l.convs[key(k)]
	if !ok {
		c = &conversation{id: eventlog.NewLogID(), first: 1}
		l.convs[key(k)] = c
	}
	if epoch < c.epoch {
		return nil, fmt.Errorf("%w: %s claimed at epoch %d, not %d", eventlog.ErrFenced, k, c.epoch, epoch)
	}
	c.epoch = epoch
	return c, nil
}

// Append implements eventlog.Log.
func (l *Log) Append(_ context.Context, k eventlog.Key, epoch int64, events []eventlog.Event) (int64, error) {
	if err := eventlog.ValidateAppend(epoch, events); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.convs[key(k)]
	if !ok {
		return 0, fmt.Errorf("%w: %s", eventlog.ErrUnknownConversation, k)
	}
	if epoch < c.epoch {
		return 0, fmt.Errorf("%w: %s claimed at epoch %d, append at %d", eventlog.ErrFenced, k, c.epoch, epoch)
	}
	c.epoch = epoch
	now := l.now()
	for _, e := range events {
		c.last++
		e.Seq, e.Epoch, e.Time = c.last, epoch, now
		e.Data = append([]byte(nil), e.Data...)
		c.events = append(c.events, e)
	}
	return c.last, nil
}

// Read implements eventlog.Log.
func (l *Log) Read(_ context.Context, k eventlog.Key, after int64, limit int) ([]eventlog.Event, error) {
	limit, err := eventlog.ValidateRead(after, limit)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.convs[key(k)]
	if !ok {
		return nil, fmt.Errorf("%w: %s", eventlog.ErrUnknownConversation, k)
	}
	start := max(after+1, c.first) - c.first
	if start >= int64(len(c.events)) {
		return nil, nil
	}
	end := min(start+int64(limit), int64(len(c.events)))
	out := make([]eventlog.Event, 0, end-start)
	for _, e := range c.events[start:end] {
		e.Data = append([]byte(nil), e.Data...)
		out = append(out, e)
	}
	return out, nil
}

// Bounds implements eventlog.Log.
func (l *Log) Bounds(_ context.Context, k eventlog.Key) (eventlog.Bounds, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.convs[key(k)]
	if !ok {
		return eventlog.Bounds{}, fmt.Errorf("%w: %s", eventlog.ErrUnknownConversation, k)
	}
	return c.bounds(), nil
}

// Trim implements eventlog.Log.
func (l *Log) Trim(_ context.Context, k eventlog.Key, epoch int64, keep int) error {
	if err := eventlog.ValidateTrim(epoch, keep); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.convs[key(k)]
	if !ok {
		return fmt.Errorf("%w: %s", eventlog.ErrUnknownConversation, k)
	}
	if epoch < c.epoch {
		return fmt.Errorf("%w: %s claimed at epoch %d, trim at %d", eventlog.ErrFenced, k, c.epoch, epoch)
	}
	if drop := len(c.events) - keep; drop > 0 {
		c.events = append([]eventlog.Event(nil), c.events[drop:]...)
		c.first += int64(drop)
		if c.snap != nil && c.snap.Seq < c.first-1 {
			c.snap = nil // before the history: of no use
		}
	}
	return nil
}

// Delete implements eventlog.Log.
func (l *Log) Delete(_ context.Context, k eventlog.Key) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.convs, key(k))
	return nil
}

// Close implements eventlog.Log.
func (l *Log) Close() error { return nil }

func (c *conversation) bounds() eventlog.Bounds {
	return eventlog.Bounds{FirstSeq: c.first, LastSeq: c.last, Epoch: c.epoch, LogID: c.id}
}
