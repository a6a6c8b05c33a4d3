package kubelog

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/internal/sharedctx"
)

// Append implements eventlog.Log. Appends to one conversation that arrive
// while one is being written go out together in the next write (group
// commit, groupcommit.go); each returns once its own events are written.
func (l *Log) Append(ctx context.Context, k eventlog.Key, epoch int64, events []eventlog.Event) (int64, error) {
	if err := eventlog.ValidateAppend(epoch, events); err != nil {
		return 0, err
	}
	key := headKey(k)
	me := &pendingAppend{ctx: ctx, epoch: epoch, events: events, bytes: eventlog.BatchBytes(events)}
	l.commits.add(key, me)
	defer l.appending.lock(key)()
	if me.written {
		// The write before ours took it along.
		return me.last, me.err
	}
	batch := l.commits.take(key, me)
	all := events
	if len(batch) > 1 {
		all = make([]eventlog.Event, 0, eventlog.MaxBatchEvents)
		for _, p := range batch {
			all = append(all, p.events...)
		}
	}
	ctxs := make([]context.Context, 0, len(batch))
	for _, p := range batch {
		ctxs = append(ctxs, p.ctx)
	}
	// One appender giving up must not fail the others' events.
	wctx, release := sharedctx.UntilAllDone(ctxs...)
	last, err := l.write(wctx, k, epoch, all)
	release()
	for i := len(batch) - 1; i >= 0; i-- {
		p := batch[i]
		p.written, p.err = true, err
		if err == nil {
			p.last = last
			last -= int64(len(p.events))
		}
	}
	return me.last, me.err
}

// write appends events in one update of the head (retried on conflicts),
// sealing the tail into a chunk when it is full.
func (l *Log) write(ctx context.Context, k eventlog.Key, epoch int64, events []eventlog.Event) (int64, error) {
	head := l.recall(k)
	for attempt := range maxAttempts {
		if head == nil {
			var err error
			if head, err = l.getHead(ctx, k); err != nil {
				return 0, err
			}
		}
		if epoch < head.Spec.Epoch {
			return 0, fmt.Errorf("%w: %s claimed at epoch %d, append at %d", eventlog.ErrFenced, k, head.Spec.Epoch, epoch)
		}
		now := metav1.NewMicroTime(l.now())
		for _, e := range events {
			head.Spec.LastSeq++
			head.Spec.Tail = append(head.Spec.Tail, tetherv1alpha1.LogEvent{
				Seq: head.Spec.LastSeq, Epoch: epoch, Type: e.Type, ClientID: e.ClientID, Time: now, Data: string(e.Data),
			})
		}
		head.Spec.Epoch = epoch
		err := l.c.Update(ctx, head)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			l.forget(k)
			head = nil
			backoff(attempt)
			continue
		}
		if err != nil {
			l.forget(k)
			return 0, fmt.Errorf("kubelog: appending to %s (the append may or may not have landed, whole): %w", k, err)
		}
		last := head.Spec.LastSeq
		if sealed := !needsSeal(head) || l.seal(ctx, k, epoch, head) == nil; !sealed {
			// The append is committed; sealing only moves committed
			// events, and the next append seals again. The head may have
			// moved on, so it is read afresh then.
			l.forget(k)
			return last, nil
		}
		l.remember(head)
		return last, nil
	}
	return 0, fmt.Errorf("kubelog: appending to %s: still conflicting after %d attempts", k, maxAttempts)
}

func needsSeal(head *tetherv1alpha1.ConversationLog) bool {
	if len(head.Spec.Tail) >= SealEvents {
		return true
	}
	size := 0
	for i := range head.Spec.Tail {
		size += len(head.Spec.Tail[i].Data)
	}
	return size >= SealBytes
}

// seal copies the tail into a chunk and points the head at it, under the
// appender's epoch. Over MaxChunks, the oldest chunks are dropped.
func (l *Log) seal(ctx context.Context, k eventlog.Key, epoch int64, head *tetherv1alpha1.ConversationLog) error {
	tail := head.Spec.Tail
	first, last := tail[0].Seq, tail[len(tail)-1].Seq
	ref := tetherv1alpha1.LogChunkRef{Name: chunkName(k.Name, head.UID, first, last), FirstSeq: first, LastSeq: last}
	chunk := &tetherv1alpha1.ConversationLogChunk{
		ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: ref.Name, OwnerReferences: ownerRefs(k),
			Labels: map[string]string{tetherv1alpha1.LogConversationLabel: nameHash(k.Name)}},
		Events: tail,
	}
	if err := l.c.Create(ctx, chunk); apierrors.IsAlreadyExists(err) {
		// Another attempt, or another owner, sealed the same range of the
		// same history first: it holds the same committed events, or the
		// store is damaged. Never overwrite it.
		existing := &tetherv1alpha1.ConversationLogChunk{}
		if err := l.c.Get(ctx, client.ObjectKeyFromObject(chunk), existing); err != nil {
			return err
		}
		if !sameEvents(existing.Events, tail) {
			return fmt.Errorf("%w: chunk %s of %s holds other events than the ones it is named for", eventlog.ErrHole, ref.Name, k)
		}
	} else if err != nil {
		return err
	}
	if head.Spec.Epoch != epoch {
		return eventlog.ErrFenced
	}
	head.Spec.Chunks = append(head.Spec.Chunks, ref)
	head.Spec.Tail = nil
	var dropped []tetherv1alpha1.LogChunkRef
	if over := len(head.Spec.Chunks) - MaxChunks; over > 0 {
		dropped = slices.Clone(head.Spec.Chunks[:over])
		head.Spec.Chunks = head.Spec.Chunks[over:]
		head.Spec.FirstSeq = max(head.Spec.FirstSeq, head.Spec.Chunks[0].FirstSeq)
		dropped = append(dropped, dropStaleSnapshot(head)...)
	}
	if err := l.c.Update(ctx, head); err != nil {
		return err
	}
	l.deleteChunks(ctx, k, dropped)
	return nil
}

// sameEvents reports whether a and b are the same events, field by field.
func sameEvents(a, b []tetherv1alpha1.LogEvent) bool {
	return slices.EqualFunc(a, b, func(x, y tetherv1alpha1.LogEvent) bool {
		return x.Seq == y.Seq && x.Epoch == y.Epoch && x.Type == y.Type && x.ClientID == y.ClientID &&
			x.Data == y.Data && x.Time.Equal(&y.Time)
	})
}

func (l *Log) deleteChunks(ctx context.Context, k eventlog.Key, refs []tetherv1alpha1.LogChunkRef) {
	for _, ref := range refs {
		chunk := &tetherv1alpha1.ConversationLogChunk{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: ref.Name}}
		// Left behind on failure: removed with the log (by label) or by the
		// garbage collector with the Conversation.
		_ = client.IgnoreNotFound(l.c.Delete(ctx, chunk))
	}
}
