package eventlogtest

import (
	"context"
	"errors"
	"sync"

	"tether.dev/tether/eventlog"
)

// ErrDown is what FailingOnce returns.
var ErrDown = errors.New("eventlogtest: the store is down")

// FailingOnce fails the first append that records an event of type Type,
// as a store that is briefly down does (an API server restarting); every
// other call goes to Log.
type FailingOnce struct {
	eventlog.Log
	Type string
	once sync.Once
}

// Append implements eventlog.Log.
func (l *FailingOnce) Append(ctx context.Context, k eventlog.Key, epoch int64, events []eventlog.Event) (int64, error) {
	for _, e := range events {
		if e.Type != l.Type {
			continue
		}
		failed := false
		l.once.Do(func() { failed = true })
		if failed {
			return 0, ErrDown
		}
	}
	return l.Log.Append(ctx, k, epoch, events)
}
