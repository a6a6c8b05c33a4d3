package eventlog

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"tether.dev/tether/protocol"
)

// Limits every backend enforces.
const (
	// MaxEventBytes bounds one event: its type, client id and data.
	MaxEventBytes = 64 << 10
	// MaxBatchEvents bounds the events of one append.
	MaxBatchEvents = 256
	// MaxBatchBytes bounds the bytes of one append.
	MaxBatchBytes = 256 << 10
	// MaxReadEvents bounds the events of one read.
	MaxReadEvents = 1000
	// MaxTypeLength bounds an event type.
	MaxTypeLength = protocol.MaxEventTypeBytes
	// MaxClientIDLength bounds a client message id.
	MaxClientIDLength = protocol.MaxIDBytes
)

var (
	// ErrFenced means the appender's epoch is older than the log's: another
	// owner claimed the conversation. Nothing was written; the appender must
	// stop acting for the conversation.
	ErrFenced = errors.New("eventlog: fenced by a newer epoch")
	// ErrUnknownConversation means the conversation has no log: it was never
	// claimed, or it was deleted.
	ErrUnknownConversation = errors.New("eventlog: unknown conversation")
	// ErrInvalid means the request was malformed (an event over the size
	// limit, an empty batch, a bad bound). Nothing was written.
	ErrInvalid = errors.New("eventlog: invalid request")
	// ErrTooLarge means an event or a batch is over its size limit (it
	// comes with ErrInvalid): it will never be accepted.
	ErrTooLarge = errors.New("too large")
	// ErrHole means the store holds less than its own index says: an event
	// it acknowledged is missing, or a chunk disagrees with the index. The
	// history is incomplete and is never served as if it were whole.
	ErrHole = errors.New("eventlog: the history has a hole")
)

// Key names a conversation's log.
type Key struct {
	Namespace, Name string
	// UID is the Conversation's UID; backends that tie the log's lifetime to
	// the object (kube) use it.
	UID string
}

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Event is one durable event. Seq, Epoch and Time are set by the log.
type Event struct {
	// Seq is the event's sequence number: 1, 2, 3, ... per conversation.
	Seq int64 `json:"seq"`
	// Epoch is the epoch of the owner that appended the event.
	Epoch int64 `json:"epoch"`
	// Type says what the event is (user_message, assistant_message, prompt,
	// answer, turn_finished, ...); the runtime's protocol defines them.
	Type string `json:"type"`
	// ClientID is the id a client gave the message this event records, so a
	// message sent again is recognised, even by another owner.
	ClientID string `json:"clientId,omitempty"`
	// Time is when the event was appended.
	Time time.Time `json:"time"`
	// Data is the event's JSON payload.
	Data json.RawMessage `json:"data,omitempty"`
}

// Bounds describe what a log holds. Events FirstSeq..LastSeq are retained;
// events before FirstSeq were trimmed. An empty log has FirstSeq = LastSeq+1.
type Bounds struct {
	FirstSeq, LastSeq int64
	// Epoch is the newest epoch that claimed or appended to the log.
	Epoch int64
	// LogID names this history: it is made when the log is created and
	// changes when the log is deleted and created again (a Conversation of
	// the same name, a flushed store), so a reader's cursor can say which
	// history its sequence number belongs to.
	LogID string
}

// Complete reports whether a reader that has seen everything up to and
// including after can get every later event.
func (b Bounds) Complete(after int64) bool {
	return after+1 >= b.FirstSeq
}

// Log is the durable event log of every conversation of one store.
type Log interface {
	// Claim takes the log for epoch: it creates the log if needed and raises
	// its epoch, so appends under older epochs fail from now on. A new owner
	// claims before it reads the log, so that nothing can be appended behind
	// its back. It fails with ErrFenced if a newer epoch has claimed.
	Claim(ctx context.Context, key Key, epoch int64) (Bounds, error)

	// Append appends events under epoch, atomically: all or nothing, and
	// only if no newer epoch has claimed the log (ErrFenced otherwise). It
	// assigns sequence numbers and returns the last one.
	Append(ctx context.Context, key Key, epoch int64, events []Event) (int64, error)

	// Read returns up to limit events with Seq > after, in order.
	Read(ctx context.Context, key Key, after int64, limit int) ([]Event, error)

	// Bounds returns what the log holds.
	Bounds(ctx context.Context, key Key) (Bounds, error)

	// Trim drops the oldest events so that at most keep remain, under
	// epoch: a fenced owner trims nothing (ErrFenced).
	Trim(ctx context.Context, key Key, epoch int64, keep int) error

	// Delete removes every trace of the conversation. Deleting a log that
	// does not exist is not an error.
	Delete(ctx context.Context, key Key) error

	// Close releases the backend's connections.
	Close() error
}

// ClaimReader is a Log that claims a log and reads what a new owner restores
// from together, in fewer round trips than a Claim and Reads: what a new
// owner does before it can serve anyone.
type ClaimReader interface {
	// ClaimRead claims key for epoch as Claim does, and returns the newest
	// snapshot saved (SaveSnapshot) that is still within the retained
	// history (Seq >= FirstSeq-1), or nil, with every event the log held
	// then after it (after FirstSeq-1 without one): what Reads up to
	// LastSeq would return.
	ClaimRead(ctx context.Context, key Key, epoch int64) (Bounds, *Snapshot, []Event, error)
}

// MaxSnapshotBytes bounds a snapshot's data.
const MaxSnapshotBytes = 1 << 20

// Snapshot is an owner's record of a conversation's state after event Seq,
// so that the next owner need not read the whole history. The store keeps
// Data as it is given.
type Snapshot struct {
	Seq  int64
	Data []byte
}

// Snapshotter is a Log that keeps a conversation's newest snapshot.
type Snapshotter interface {
	// SaveSnapshot keeps s as key's newest snapshot, under epoch: fenced
	// as an append is (ErrFenced, nothing kept), and ignored if a snapshot
	// at s.Seq or later is kept already or s.Seq is before the retained
	// history. s.Seq must not be past the log's last event (ErrInvalid).
	SaveSnapshot(ctx context.Context, key Key, epoch int64, s Snapshot) error
}

// ValidateSnapshot checks a snapshot's epoch, seq and size.
func ValidateSnapshot(epoch int64, s Snapshot) error {
	switch {
	case epoch < 1:
		return fmt.Errorf("%w: epoch %d, want 1 or more", ErrInvalid, epoch)
	case s.Seq < 1:
		return fmt.Errorf("%w: a snapshot after seq %d", ErrInvalid, s.Seq)
	case len(s.Data) == 0:
		return fmt.Errorf("%w: an empty snapshot", ErrInvalid)
	case len(s.Data) > MaxSnapshotBytes:
		return fmt.Errorf("%w: %w: a snapshot of %d bytes, the limit is %d", ErrInvalid, ErrTooLarge, len(s.Data), MaxSnapshotBytes)
	}
	return nil
}

// BatchBytes is what events count against MaxBatchBytes.
func BatchBytes(events []Event) int {
	n := 0
	for _, e := range events {
		n += len(e.Type) + len(e.ClientID) + len(e.Data)
	}
	return n
}

// ValidateAppend checks a batch against the limits before any backend is
// touched, so a bad batch never half-writes.
func ValidateAppend(epoch int64, events []Event) error {
	if epoch < 1 {
		return fmt.Errorf("%w: epoch %d, want 1 or more", ErrInvalid, epoch)
	}
	if len(events) == 0 {
		return fmt.Errorf("%w: empty batch", ErrInvalid)
	}
	if len(events) > MaxBatchEvents {
		return fmt.Errorf("%w: %d events in one append, the limit is %d", ErrInvalid, len(events), MaxBatchEvents)
	}
	total := 0
	for i, e := range events {
		switch {
		case e.Type == "" || len(e.Type) > MaxTypeLength:
			return fmt.Errorf("%w: event %d: type must be 1 to %d bytes", ErrInvalid, i, MaxTypeLength)
		case len(e.ClientID) > MaxClientIDLength:
			return fmt.Errorf("%w: event %d: client id over %d bytes", ErrInvalid, i, MaxClientIDLength)
		case len(e.Data) > 0 && !json.Valid(e.Data):
			return fmt.Errorf("%w: event %d: data is not valid JSON", ErrInvalid, i)
		}
		size := len(e.Type) + len(e.ClientID) + len(e.Data)
		if size > MaxEventBytes {
			return fmt.Errorf("%w: %w: event %d is %d bytes, the limit is %d", ErrInvalid, ErrTooLarge, i, size, MaxEventBytes)
		}
		total += size
	}
	if total > MaxBatchBytes {
		return fmt.Errorf("%w: %w: batch of %d bytes, the limit is %d", ErrInvalid, ErrTooLarge, total, MaxBatchBytes)
	}
	return nil
}

// ValidateRead checks a read's bounds and returns the effective limit.
func ValidateRead(after int64, limit int) (int, error) {
	if after < 0 {
		return 0, fmt.Errorf("%w: read after %d", ErrInvalid, after)
	}
	if limit <= 0 || limit > MaxReadEvents {
		limit = MaxReadEvents
	}
	return limit, nil
}

// CheckRead verifies that events are exactly what a log with bounds b must
// return for a read after after with limit: consecutive sequence numbers
// from the first retained one past after, as many as the log holds up to
// limit. Anything else is a hole (ErrHole), never a shorter history.
func CheckRead(k Key, b Bounds, after int64, limit int, events []Event) error {
	from := max(after+1, b.FirstSeq)
	want := max(min(int64(limit), b.LastSeq-from+1), 0)
	for i, e := range events {
		if e.Seq != from+int64(i) {
			return fmt.Errorf("%w: %s: expected seq %d after %d, found %d", ErrHole, k, from+int64(i), after, e.Seq)
		}
	}
	if int64(len(events)) != want {
		return fmt.Errorf("%w: %s: holds events %d..%d, a read after %d found %d of them", ErrHole, k, b.FirstSeq, b.LastSeq, after, len(events))
	}
	return nil
}

// ValidateTrim checks a trim's epoch and count.
func ValidateTrim(epoch int64, keep int) error {
	if epoch < 1 {
		return fmt.Errorf("%w: epoch %d, want 1 or more", ErrInvalid, epoch)
	}
	if keep < 0 {
		return fmt.Errorf("%w: keep %d", ErrInvalid, keep)
	}
	return nil
}

// ValidateClaim checks a claim's epoch.
func ValidateClaim(epoch int64) error {
	if epoch < 1 {
		return fmt.Errorf("%w: epoch %d, want 1 or more", ErrInvalid, epoch)
	}
	return nil
}

// NewLogID returns a fresh log identity for a backend that makes its own.
func NewLogID() string { return rand.Text()[:20] }
