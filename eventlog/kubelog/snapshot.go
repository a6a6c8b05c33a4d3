package kubelog

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
)

// A snapshot is kept in a chunk of its own, named after the log, the seq it
// follows and the epoch that took it, so that two owners never make the same
// one. Its data is split over the chunk's events (each at most
// snapshotPieceBytes, cut between characters), all of type SnapshotType and
// at the snapshot's seq. The head names the newest one (spec.snapshot),
// set by an update that checks the epoch as an append does: a fenced owner
// can at most leave an orphan snapshot chunk behind, never have it used.

const (
	// SnapshotType is the type of the events of a snapshot chunk.
	SnapshotType       = "snapshot"
	snapshotPieceBytes = 60 << 10
)

var _ eventlog.Snapshotter = (*Log)(nil)

// snapshotName names the snapshot of the log with identity logID taken
// after seq at epoch.
func snapshotName(conv string, logID types.UID, seq, epoch int64) string {
	return logObjectName(conv, logID, "snap-"+strconv.FormatInt(seq, 10)+"-e"+strconv.FormatInt(epoch, 10))
}

// pieces splits data into events of at most snapshotPieceBytes, each cut
// between two characters.
func pieces(data []byte, seq, epoch int64, now metav1.MicroTime) []tetherv1alpha1.LogEvent {
	var out []tetherv1alpha1.LogEvent
	for len(data) > 0 {
		n := min(len(data), snapshotPieceBytes)
		for n < len(data) && n > 0 && !utf8.RuneStart(data[n]) {
			n--
		}
		out = append(out, tetherv1alpha1.LogEvent{Seq: seq, Epoch: epoch, Type: SnapshotType, Time: now, Data: string(data[:n])})
		data = data[n:]
	}
	return out
}

// SaveSnapshot implements eventlog.Snapshotter.
func (l *Log) SaveSnapshot(ctx context.Context, k eventlog.Key, epoch int64, snap eventlog.Snapshot) error {
	if err := eventlog.ValidateSnapshot(epoch, snap); err != nil {
		return err
	}
	defer l.appending.lock(headKey(k))()
	head := l.recall(k)
	var made *tetherv1alpha1.LogChunkRef
	for attempt := range maxAttempts {
		if head == nil {
			var err error
			if head, err = l.getHead(ctx, k); err != nil {
				return err
			}
		}
		switch {
		case epoch < head.Spec.Epoch:
			return fmt.Errorf("%w: %s claimed at epoch %d, a snapshot at %d", eventlog.ErrFenced, k, head.Spec.Epoch, epoch)
		case snap.Seq > head.Spec.LastSeq:
			return fmt.Errorf("%w: a snapshot after seq %d of %s, which ends at %d", eventlog.ErrInvalid, snap.Seq, k, head.Spec.LastSeq)
		case snap.Seq < head.Spec.FirstSeq-1, head.Spec.Snapshot != nil && head.Spec.Snapshot.LastSeq >= snap.Seq:
			return nil // of no use: before the history, or older than the one kept
		}
		if made == nil {
			ref := tetherv1alpha1.LogChunkRef{Name: snapshotName(k.Name, head.UID, snap.Seq, epoch), FirstSeq: snap.Seq, LastSeq: snap.Seq}
			chunk := &tetherv1alpha1.ConversationLogChunk{
				ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: ref.Name, OwnerReferences: ownerRefs(k),
					Labels: map[string]string{tetherv1alpha1.LogConversationLabel: nameHash(k.Name)}},
				Events: pieces(snap.Data, snap.Seq, epoch, metav1.NewMicroTime(l.now())),
			}
			if err := l.c.Create(ctx, chunk); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("kubelog: saving a snapshot of %s: %w", k, err)
			} else if err != nil {
				// This owner saved this snapshot before (the head update
				// that followed failed): it is the same state.
				existing, gerr := l.getChunk(ctx, k, ref.Name)
				if gerr != nil || joinPieces(existing.Events, snap.Seq) != string(snap.Data) {
					return nil // leave it: the next snapshot is another name
				}
			}
			made = &ref
		}
		previous := head.Spec.Snapshot
		head.Spec.Snapshot = made
		err := l.c.Update(ctx, head)
		if apierrors.IsConflict(err) {
			l.forget(k)
			head = nil
			backoff(attempt)
			continue
		}
		if err != nil {
			l.forget(k)
			return fmt.Errorf("kubelog: pointing the log of %s at its snapshot: %w", k, err)
		}
		l.remember(head)
		if previous != nil {
			l.deleteChunks(ctx, k, []tetherv1alpha1.LogChunkRef{*previous})
		}
		return nil
	}
	return fmt.Errorf("kubelog: saving a snapshot of %s: still conflicting after %d attempts", k, maxAttempts)
}

// joinPieces returns a snapshot chunk's data, or "" if its events are not
// the pieces of a snapshot at seq.
func joinPieces(events []tetherv1alpha1.LogEvent, seq int64) string {
	var b strings.Builder
	for i := range events {
		if events[i].Type != SnapshotType || events[i].Seq != seq {
			return ""
		}
		b.WriteString(events[i].Data)
	}
	return b.String()
}

// loadSnapshot returns the snapshot head names, if it is within the retained
// history and can be read; nil otherwise: a snapshot only spares reading
// events, and without it the history is read whole.
func (l *Log) loadSnapshot(ctx context.Context, k eventlog.Key, head *tetherv1alpha1.ConversationLog) *eventlog.Snapshot {
	ref := usableSnapshot(head)
	if ref == nil {
		return nil
	}
	chunk, err := l.getChunk(ctx, k, ref.Name)
	if err != nil {
		return nil
	}
	data := joinPieces(chunk.Events, ref.LastSeq)
	if data == "" {
		return nil
	}
	return &eventlog.Snapshot{Seq: ref.LastSeq, Data: []byte(data)}
}

// usableSnapshot is the snapshot head names if it is within the retained
// history, or nil.
func usableSnapshot(head *tetherv1alpha1.ConversationLog) *tetherv1alpha1.LogChunkRef {
	ref := head.Spec.Snapshot
	if ref == nil || ref.LastSeq < head.Spec.FirstSeq-1 || ref.LastSeq > head.Spec.LastSeq {
		return nil
	}
	return ref
}

// dropStaleSnapshot forgets head's snapshot if the history now starts after
// it (a trim), and returns its chunk to delete once head is written.
func dropStaleSnapshot(head *tetherv1alpha1.ConversationLog) []tetherv1alpha1.LogChunkRef {
	if ref := head.Spec.Snapshot; ref != nil && ref.LastSeq < head.Spec.FirstSeq-1 {
		head.Spec.Snapshot = nil
		return []tetherv1alpha1.LogChunkRef{*ref}
	}
	return nil
}
