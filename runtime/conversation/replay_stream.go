package conversation

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/semaphore"
	"k8s.io/utils/ptr"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/protocol"
)

// A socket's replay is read page by page, outside the conversation's lock,
// while its live frames queue on the subscription: a client that asks for a
// long history at after=0 costs one page of memory at a time, not the whole
// history, and never holds up the conversation's appends. Every replay of a
// host also shares one byte budget (Config.ReplayBudget), so many such
// sockets at once cost at most that budget.
const (
	// ReplayPageEvents is how many events one page of a replay holds.
	ReplayPageEvents = 16
	// ReplayPageBytes is the most one page can hold.
	ReplayPageBytes = ReplayPageEvents * eventlog.MaxEventBytes
)

// ErrTooManySubscribers refuses a socket beyond Config.MaxSubscribers.
var ErrTooManySubscribers = errors.New("too many sockets on this conversation")

// NewReplayBudget returns a budget of bytes shared by the replays of every
// conversation that names it (Config.ReplayBudget): at least one page.
func NewReplayBudget(bytes int64) *semaphore.Weighted {
	return semaphore.NewWeighted(max(bytes, ReplayPageBytes))
}

// Replay calls fn with each frame of the socket's replay, in order: a reset
// frame if the cursor was not honoured, the events after the cursor up to
// where its live frames begin, replay_complete and the pending prompt. It
// stops at fn's first error, or the store's (a hole is reported and
// returned: the history is never served as complete). Call it once, before
// reading C.
func (s *Subscription) Replay(ctx context.Context, fn func(protocol.ServerFrame) error) error {
	for _, f := range s.head {
		if err := fn(f); err != nil {
			return err
		}
	}
	for {
		page, held := s.page, s.pageHeld
		s.page, s.pageHeld = nil, 0
		if page == nil && s.after < s.upTo {
			var err error
			if page, held, err = s.readPage(ctx); err != nil {
				return err
			}
		}
		if len(page) == 0 {
			break
		}
		err := func() error {
			defer s.release(held)
			for _, e := range page {
				if err := fn(clientFrame(e)); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	for _, f := range s.tail {
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// readPage reads the next page of the replay within the budget; held is
// what it took of it, to release once the page is written.
func (s *Subscription) readPage(ctx context.Context) (page []eventlog.Event, held int64, err error) {
	c := s.c
	if budget := c.cfg.ReplayBudget; budget != nil {
		if err := budget.Acquire(ctx, ReplayPageBytes); err != nil {
			return nil, 0, err
		}
		held = ReplayPageBytes
	}
	batch, err := c.cfg.Log.Read(ctx, c.cfg.Key, s.after, ReplayPageEvents)
	if err == nil && len(batch) == 0 {
		// The log ends before where the live frames begin: events the
		// owner acknowledged are missing.
		err = fmt.Errorf("%w: %s: a read after %d found nothing, the history goes to %d", eventlog.ErrHole, c.cfg.Key, s.after, s.upTo)
	}
	if err != nil {
		s.release(held)
		c.reportHole(err)
		return nil, 0, err
	}
	if first := batch[0].Seq; first > s.after+1 {
		s.startsAt(first)
	}
	for _, e := range batch {
		if e.Seq <= s.upTo {
			page = append(page, e)
		}
	}
	s.after = batch[len(batch)-1].Seq
	return page, held, nil
}

// startsAt says the history this replay serves begins at seq first, later
// than the events the client asked for: a trim this owner did not know of
// when the socket was bound (its outcome was unknown, or a newer owner
// trimmed). The client is told its history is incomplete, from first on,
// never handed a gap as a complete history.
func (s *Subscription) startsAt(first int64) {
	for i := range s.tail {
		if f := &s.tail[i]; f.Type == protocol.TypeReplayComplete {
			f.Complete = ptr.To(false)
			f.FirstSeq = max(f.FirstSeq, first)
		}
	}
}

func (s *Subscription) release(held int64) {
	if held > 0 {
		s.c.cfg.ReplayBudget.Release(held)
	}
}
