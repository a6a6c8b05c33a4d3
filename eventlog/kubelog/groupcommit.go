package kubelog

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/eventlog"
)

// Group commit: appends to one conversation that arrive while a write of it
// is in flight wait for that write (the key's lock), and the first of them to
// get the lock writes every one still waiting, in the order they arrived, in
// one update of the head. There is no timer: an append that finds no write
// in flight goes out at once, alone. Each appender still returns only once
// its own events are written (or failed), with its own last sequence number.
//
// A batch holds appends of one epoch only (a stale instance of the owner in
// the same process is fenced on its own), and stays within one append's
// limits (eventlog.MaxBatchEvents, eventlog.MaxBatchBytes), so the head is
// never larger than one append could make it; what does not fit waits for
// the next write.

// pendingAppend is one Append waiting to be written.
type pendingAppend struct {
	ctx    context.Context
	epoch  int64
	events []eventlog.Event
	bytes  int

	// Set by the writer, under the key's lock, before it unlocks.
	written bool
	last    int64
	err     error
}

// commitQueues holds, per conversation, the appends not yet taken by a
// writer. An entry exists only while something waits: a process that has
// appended to a hundred thousand conversations keeps none for any it is not
// appending to now.
type commitQueues struct {
	mu     sync.Mutex
	queued map[types.NamespacedName][]*pendingAppend
}

// add queues p for key.
func (q *commitQueues) add(key types.NamespacedName, p *pendingAppend) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued == nil {
		q.queued = map[types.NamespacedName][]*pendingAppend{}
	}
	q.queued[key] = append(q.queued[key], p)
}

// take removes and returns the batch lead writes: lead and the appends
// queued for key at lead's epoch, in the order they arrived, as many as fit
// in one append with lead's (lead is always in it: a batch is never without
// its writer's own events). Once one does not fit, none queued after it
// joins, so no append is overtaken for long.
func (q *commitQueues) take(key types.NamespacedName, lead *pendingAppend) []*pendingAppend {
	q.mu.Lock()
	defer q.mu.Unlock()
	queued := q.queued[key]
	var batch []*pendingAppend
	events, bytes := len(lead.events), lead.bytes
	kept := make([]*pendingAppend, 0, len(queued))
	full := false
	for _, p := range queued {
		switch {
		case p == lead:
			batch = append(batch, p)
			continue
		case p.epoch != lead.epoch:
		case !full && events+len(p.events) <= eventlog.MaxBatchEvents && bytes+p.bytes <= eventlog.MaxBatchBytes:
			batch = append(batch, p)
			events += len(p.events)
			bytes += p.bytes
			continue
		default:
			full = true
		}
		kept = append(kept, p)
	}
	if len(kept) == 0 {
		delete(q.queued, key)
	} else {
		q.queued[key] = kept
	}
	return batch
}
