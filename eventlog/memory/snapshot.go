package memory

import (
	"context"
	"fmt"

	"tether.dev/tether/eventlog"
)

var (
	_ eventlog.ClaimReader = (*Log)(nil)
	_ eventlog.Snapshotter = (*Log)(nil)
)

// ClaimRead implements eventlog.ClaimReader.
func (l *Log) ClaimRead(_ context.Context, k eventlog.Key, epoch int64) (eventlog.Bounds, *eventlog.Snapshot, []eventlog.Event, error) {
	if err := eventlog.ValidateClaim(epoch); err != nil {
		return eventlog.Bounds{}, nil, nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c, err := l.claimLocked(k, epoch)
	if err != nil {
		return eventlog.Bounds{}, nil, nil, err
	}
	var snap *eventlog.Snapshot
	from := c.first
	if c.snap != nil {
		snap = &eventlog.Snapshot{Seq: c.snap.Seq, Data: append([]byte(nil), c.snap.Data...)}
		from = c.snap.Seq + 1
	}
	events := make([]eventlog.Event, 0, c.last-from+1)
	for _, e := range c.events[from-c.first:] {
		e.Data = append([]byte(nil), e.Data...)
		events = append(events, e)
	}
	return c.bounds(), snap, events, nil
}

// SaveSnapshot implements eventlog.Snapshotter.
func (l *Log) SaveSnapshot(_ context.Context, k eventlog.Key, epoch int64, s eventlog.Snapshot) error {
	if err := eventlog.ValidateSnapshot(epoch, s); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.convs[key(k)]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s", eventlog.ErrUnknownConversation, k)
	case epoch < c.epoch:
		return fmt.Errorf("%w: %s claimed at epoch %d, a snapshot at %d", eventlog.ErrFenced, k, c.epoch, epoch)
	case s.Seq > c.last:
		return fmt.Errorf("%w: a snapshot after seq %d of %s, which ends at %d", eventlog.ErrInvalid, s.Seq, k, c.last)
	case s.Seq < c.first-1, c.snap != nil && c.snap.Seq >= s.Seq:
		return nil // of no use: before the history, or older than the one kept
	}
	c.snap = &eventlog.Snapshot{Seq: s.Seq, Data: append([]byte(nil), s.Data...)}
	return nil
}
