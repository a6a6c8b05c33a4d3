// Package kubelog keeps conversations' event logs in the API server, so the
// default installation needs nothing but the cluster.
//
// A log is a ConversationLog object (the head: epoch, bounds, the list of
// sealed chunks and the newest events, its "tail") and ConversationLogChunk
// objects holding sealed events. An append is one update of the head with the
// resourceVersion it read: the epoch check and the append are atomic, and the
// head is the only commit point. When the tail passes SealEvents or
// SealBytes, its events are copied into a new chunk and the head is updated
// to point at it.
//
// Chunks are immutable: they are created, never updated (the runtime's role
// has no update on them), and named after the log's identity and the exact
// range they hold, so two writers can only ever race to create the same
// events. An owner that lost the conversation (frozen past its lease, then
// thawed) can at most leave an orphan chunk of committed events, whose head
// update then fails; it cannot change a chunk the current owner wrote. A
// chunk whose head update failed is left for the log's deletion to remove,
// since another writer may have found it and pointed the head at it.
//
// A claim raises the head's epoch. When the conversation moves from the
// owner of the epoch before (the usual case), that is one JSON patch that
// tests the epoch and the owning Conversation's UID and replaces the epoch,
// and the new owner reads its history from the head the patch returned
// (ClaimRead): one request before it can serve, where a read and an update
// of the head and a read of it again took three. Otherwise (no log yet, a
// skipped epoch, a restarted owner at its own epoch) it reads the head and
// updates it with its resourceVersion.
//
// The owner also saves a snapshot of the conversation's state now and then
// (snapshot.go), which the head names: a claim reads it and the events after
// it only.
//
// Readers check what they read against the head: a missing chunk, a chunk
// whose events are not exactly the range the head names, or a tail with a
// gap is reported as eventlog.ErrHole, never served as a complete history.
//
// Limits: every append is a write of the head (up to SealBytes of tail
// plus the batch; the owner remembers the head it wrote, so it need not read
// it first), so the API server and its etcd carry every byte. Appends to one
// conversation that arrive while one of its writes is in flight go out
// together in the next write (group commit, groupcommit.go). At most MaxChunks
// chunks are kept per conversation (older ones are dropped, as retention
// would); move to the redis store for long or busy conversations.
//
// The runtime needs get, create, update, delete and deletecollection on
// conversationlogs, and get, create, delete and deletecollection (no update)
// on conversationlogchunks, in its namespace.
package kubelog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
)

const (
	// SealEvents bounds the events of the tail kept in the head object.
	SealEvents = 32
	// SealBytes bounds the data of the tail kept in the head object.
	SealBytes = 16 << 10
	// MaxChunks bounds the chunks kept per conversation (at most
	// MaxChunks x SealEvents events), so etcd is never a data lake.
	MaxChunks = 512
	// maxAttempts bounds retries after resourceVersion conflicts;
	// claimAttempts those of a claim.
	maxAttempts   = 20
	claimAttempts = 100
	// readAhead bounds the chunks a read fetches at once: a claim after a
	// snapshot (at most about 500 events, 16 chunks) needs one round.
	readAhead = 16
)

// Log is an event log in the API server. Its client must read from the API
// server directly (not an informer cache).
type Log struct {
	c   client.Client
	now func() time.Time

	// heads remembers the last head this process wrote per conversation,
	// so that an owner's append is one update, not a read and an update. A
	// remembered head that another writer has since changed fails its
	// update with a conflict and is read afresh: the resourceVersion keeps
	// this safe.
	mu    sync.Mutex
	heads map[types.NamespacedName]*tetherv1alpha1.ConversationLog

	// appending serializes this process's writes of a head, so its own
	// goroutines never race each other for the head's resourceVersion;
	// only another process (an old or new owner) can. commits holds the
	// appends waiting for the write in flight, which the next write takes.
	appending keyLocks
	commits   commitQueues
}

// maxRemembered bounds the heads a Log remembers.
const maxRemembered = 1024

var _ eventlog.Log = (*Log)(nil)

// New returns a log that uses c, whose scheme must hold Tether's types.
func New(c client.Client) *Log {
	return &Log{c: c, now: time.Now, heads: map[types.NamespacedName]*tetherv1alpha1.ConversationLog{}}
}

// recall returns a copy of the remembered head, or nil.
func (l *Log) recall(k eventlog.Key) *tetherv1alpha1.ConversationLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	if head, ok := l.heads[headKey(k)]; ok {
		return head.DeepCopy()
	}
	return nil
}

// remember keeps a copy of head as the latest this process wrote.
func (l *Log) remember(head *tetherv1alpha1.ConversationLog) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.heads) >= maxRemembered {
		for k := range l.heads { // evict one, any one
			delete(l.heads, k)
			break
		}
	}
	l.heads[types.NamespacedName{Namespace: head.Namespace, Name: head.Name}] = head.DeepCopy()
}

func (l *Log) forget(k eventlog.Key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.heads, headKey(k))
}

func headKey(k eventlog.Key) types.NamespacedName {
	return types.NamespacedName{Namespace: k.Namespace, Name: k.Name}
}

// nameHash is a label-safe stand-in for a conversation name.
func nameHash(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:8])
}

// chunkName names the chunk of the log with identity logID that holds
// events firstSeq..lastSeq: readable when it fits in an object name, hashed
// otherwise. One name is only ever given to one range of one history.
func chunkName(conv string, logID types.UID, firstSeq, lastSeq int64) string {
	return logObjectName(conv, logID, strconv.FormatInt(firstSeq, 10)+"-"+strconv.FormatInt(lastSeq, 10))
}

// logObjectName names an object of the log with identity logID:
// CONVERSATION.WHAT.LOGID, with the conversation's name hashed when that
// does not fit in an object name.
func logObjectName(conv string, logID types.UID, what string) string {
	id := string(logID)
	if len(id) > 8 {
		id = id[:8]
	}
	suffix := "." + what + "." + id
	if len(conv)+len(suffix) <= 253 {
		return conv + suffix
	}
	return "log-" + nameHash(conv) + suffix
}

func ownerRefs(k eventlog.Key) []metav1.OwnerReference {
	if k.UID == "" {
		return nil
	}
	return []metav1.OwnerReference{{
		APIVersion: tetherv1alpha1.GroupVersion.String(), Kind: "Conversation", Name: k.Name, UID: types.UID(k.UID),
		BlockOwnerDeletion: ptr.To(false),
	}}
}

// ownerUID is the UID of the Conversation a log object belongs to.
func ownerUID(obj metav1.Object) types.UID {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Kind == "Conversation" {
			return ref.UID
		}
	}
	return ""
}

func (l *Log) getHead(ctx context.Context, k eventlog.Key) (*tetherv1alpha1.ConversationLog, error) {
	head := &tetherv1alpha1.ConversationLog{}
	if err := l.c.Get(ctx, headKey(k), head); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %s", eventlog.ErrUnknownConversation, k)
		}
		return nil, fmt.Errorf("kubelog: reading the log of %s: %w", k, err)
	}
	return head, nil
}

func bounds(head *tetherv1alpha1.ConversationLog) eventlog.Bounds {
	return eventlog.Bounds{FirstSeq: head.Spec.FirstSeq, LastSeq: head.Spec.LastSeq, Epoch: head.Spec.Epoch, LogID: string(head.UID)}
}

// Claim implements eventlog.Log.
func (l *Log) Claim(ctx context.Context, k eventlog.Key, epoch int64) (eventlog.Bounds, error) {
	head, err := l.claim(ctx, k, epoch)
	if err != nil {
		return eventlog.Bounds{}, err
	}
	return bounds(head), nil
}

// ClaimRead implements eventlog.ClaimReader: the head's snapshot, if it has
// one within the retained history, and the events after it (the whole
// retained history without one) are read from the head the claim wrote,
// with no read of the head per thousand events. The snapshot and the chunks
// after it are fetched at once, not one after the other: a moved client
// waits on this read, and on a loaded API server each round trip counts.
// Should the snapshot be unreadable, the history before it is read then.
// No one else can have changed the head since (older epochs are fenced),
// but for a newer owner claiming and trimming meanwhile: a chunk found gone
// then sends the read on from the head as it is now, as Read does (this
// owner is fenced at its next write anyway).
func (l *Log) ClaimRead(ctx context.Context, k eventlog.Key, epoch int64) (eventlog.Bounds, *eventlog.Snapshot, []eventlog.Event, error) {
	head, err := l.claim(ctx, k, epoch)
	if err != nil {
		return eventlog.Bounds{}, nil, nil, err
	}
	b := bounds(head)
	after := b.FirstSeq - 1
	var snap *eventlog.Snapshot
	loaded := make(chan struct{})
	if ref := usableSnapshot(head); ref != nil {
		after = ref.LastSeq
		go func() {
			defer close(loaded)
			snap = l.loadSnapshot(ctx, k, head)
		}()
	} else {
		close(loaded)
	}
	events, err := l.readAfter(ctx, k, head, b, after)
	<-loaded
	if err == nil && snap == nil && after > b.FirstSeq-1 {
		events, err = l.readAfter(ctx, k, head, b, b.FirstSeq-1)
	}
	if err != nil {
		return eventlog.Bounds{}, nil, nil, err
	}
	return b, snap, events, nil
}

// readAfter reads the events of head's log after seq after.
func (l *Log) readAfter(ctx context.Context, k eventlog.Key, head *tetherv1alpha1.ConversationLog, b eventlog.Bounds, after int64) ([]eventlog.Event, error) {
	var events []eventlog.Event
	for after < b.LastSeq {
		batch, err := l.readFrom(ctx, k, head, after, eventlog.MaxReadEvents)
		if err == nil {
			err = eventlog.CheckRead(k, b, after, eventlog.MaxReadEvents, batch)
		}
		if errors.Is(err, errChunkGone) {
			// Trimmed meanwhile, by a newer owner: read on as any reader
			// does, from the head as it is now.
			batch, err = l.Read(ctx, k, after, eventlog.MaxReadEvents)
			if err == nil && len(batch) == 0 {
				break
			}
		}
		if err != nil {
			return nil, err
		}
		events = append(events, batch...)
		after = batch[len(batch)-1].Seq
	}
	return events, nil
}

// claim takes the log for epoch and returns its head as claimed.
func (l *Log) claim(ctx context.Context, k eventlog.Key, epoch int64) (*tetherv1alpha1.ConversationLog, error) {
	if err := eventlog.ValidateClaim(epoch); err != nil {
		return nil, err
	}
	if head, ok := l.claimNext(ctx, k, epoch); ok {
		l.remember(head)
		return head, nil
	}
	// A new owner's claim races the old owner's appends; it backs off like
	// they do and keeps trying for longer, so it wins.
	for attempt := range claimAttempts {
		if attempt > 0 {
			backoff(attempt)
		}
		var head *tetherv1alpha1.ConversationLog
		var err error
		if attempt > 0 || epoch > 1 { // a first claim finds no log: create it at once
			head, err = l.getHead(ctx, k)
			if err != nil && !isUnknown(err) {
				return nil, err
			}
		}
		if head == nil {
			head = &tetherv1alpha1.ConversationLog{
				ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name, OwnerReferences: ownerRefs(k),
					Labels: map[string]string{tetherv1alpha1.LogConversationLabel: nameHash(k.Name)}},
				Spec: tetherv1alpha1.ConversationLogSpec{Conversation: k.Name, Epoch: epoch, FirstSeq: 1},
			}
			err = l.c.Create(ctx, head)
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("kubelog: creating the log of %s: %w", k, err)
			}
			l.remember(head)
			return head, nil
		}
		if prev := ownerUID(head); k.UID != "" && prev != "" && prev != types.UID(k.UID) {
			// Never adopt another conversation's history, nor delete it
			// (it may be a stale claim that is wrong): the garbage
			// collector removes it with its deleted Conversation.
			return nil, fmt.Errorf("kubelog: the log %s belongs to an earlier Conversation of that name (uid %s), which was deleted: waiting for the garbage collector to remove it", k, prev)
		}
		if epoch < head.Spec.Epoch {
			return nil, fmt.Errorf("%w: %s claimed at epoch %d, not %d", eventlog.ErrFenced, k, head.Spec.Epoch, epoch)
		}
		if epoch > head.Spec.Epoch {
			head.Spec.Epoch = epoch
			err = l.c.Update(ctx, head)
			if apierrors.IsConflict(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("kubelog: claiming %s: %w", k, err)
			}
		}
		l.remember(head)
		return head, nil
	}
	return nil, fmt.Errorf("kubelog: claiming %s: still conflicting after %d attempts", k, claimAttempts)
}

// claimNext claims in one write a log whose epoch is two before epoch, as
// it is when the conversation moves from an owner that had claimed it: the
// manager revokes it (a new epoch, no owner) and places it (another) in one
// status write, and so when it suspends a conversation and places it again.
// A JSON patch tests the epoch (and whose log it is) and raises it. Anything
// else (no log yet, another epoch, another conversation's log, an error) is
// left to the read and update that follow.
func (l *Log) claimNext(ctx context.Context, k eventlog.Key, epoch int64) (*tetherv1alpha1.ConversationLog, bool) {
	if epoch < 3 {
		return nil, false
	}
	ops := []map[string]any{{"op": "test", "path": "/spec/epoch", "value": epoch - 2}}
	if k.UID != "" {
		ops = append(ops, map[string]any{"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": k.UID})
	}
	ops = append(ops, map[string]any{"op": "replace", "path": "/spec/epoch", "value": epoch})
	patch, err := json.Marshal(ops)
	if err != nil {
		return nil, false
	}
	head := &tetherv1alpha1.ConversationLog{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}
	if err := l.c.Patch(ctx, head, client.RawPatch(types.JSONPatchType, patch)); err != nil {
		return nil, false
	}
	return head, true
}

// Read implements eventlog.Log. A chunk that vanished between reading the
// head and reading it was trimmed if the head moved past it; the read is
// then done again from the new head. Anything else the head names and the
// store lacks is a hole.
func (l *Log) Read(ctx context.Context, k eventlog.Key, after int64, limit int) ([]eventlog.Event, error) {
	limit, err := eventlog.ValidateRead(after, limit)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		head, err := l.getHead(ctx, k)
		if err != nil {
			return nil, err
		}
		out, err := l.readFrom(ctx, k, head, after, limit)
		if errors.Is(err, errChunkGone) && attempt < 3 {
			continue
		}
		if errors.Is(err, errChunkGone) {
			return nil, fmt.Errorf("%w: %w", eventlog.ErrHole, err)
		}
		if err != nil {
			return nil, err
		}
		if err := eventlog.CheckRead(k, bounds(head), after, limit, out); err != nil {
			return nil, err
		}
		return out, nil
	}
}

// errChunkGone is a chunk the head names that is not in the store.
var errChunkGone = errors.New("a chunk the log's head names is missing")

// readFrom reads through head's chunks and tail, checking that every chunk
// holds exactly the range the head says it does.
func (l *Log) readFrom(ctx context.Context, k eventlog.Key, head *tetherv1alpha1.ConversationLog, after int64, limit int) ([]eventlog.Event, error) {
	from := max(after+1, head.Spec.FirstSeq)
	var out []eventlog.Event
	take := func(events []tetherv1alpha1.LogEvent) {
		for i := range events {
			if e := &events[i]; e.Seq >= from && e.Seq <= head.Spec.LastSeq && len(out) < limit {
				out = append(out, toEvent(e))
			}
		}
	}
	// The chunks the read needs, fetched readAhead at a time: a new owner
	// restoring a long history reads many, and one after another they
	// would cost a round trip each.
	var refs []tetherv1alpha1.LogChunkRef
	n := 0
	for _, ref := range head.Spec.Chunks {
		if n >= limit {
			break
		}
		if ref.LastSeq < from {
			continue
		}
		refs = append(refs, ref)
		n += int(ref.LastSeq - max(ref.FirstSeq, from) + 1)
	}
	chunks := make([]*tetherv1alpha1.ConversationLogChunk, len(refs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readAhead)
	for i, ref := range refs {
		g.Go(func() error {
			chunk, err := l.getChunk(gctx, k, ref.Name)
			if err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("%w: %s of %s (events %d..%d)", errChunkGone, ref.Name, k, ref.FirstSeq, ref.LastSeq)
				}
				return fmt.Errorf("kubelog: reading chunk %s of %s: %w", ref.Name, k, err)
			}
			if err := checkChunk(ref, chunk.Events); err != nil {
				return fmt.Errorf("%w: %s: %w", eventlog.ErrHole, k, err)
			}
			chunks[i] = chunk
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, chunk := range chunks {
		take(chunk.Events)
	}
	take(head.Spec.Tail)
	return out, nil
}

// getChunk reads a chunk of k's log from the API server's watch cache, and
// from etcd when the cache does not hold it yet. A chunk is never changed
// once made (its name is its log and range), so any copy of it the cache has
// is the chunk: a claim reading a long history spares etcd a read per chunk
// (BenchmarkRestore: 100 ms to 50 ms). A cached chunk of another
// conversation of the same name (deleted since) is not taken.
func (l *Log) getChunk(ctx context.Context, k eventlog.Key, name string) (*tetherv1alpha1.ConversationLogChunk, error) {
	key := types.NamespacedName{Namespace: k.Namespace, Name: name}
	chunk := &tetherv1alpha1.ConversationLogChunk{}
	err := l.c.Get(ctx, key, chunk, &client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: "0"}})
	if err == nil && (k.UID == "" || ownerUID(chunk) == types.UID(k.UID)) {
		return chunk, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	// Made just now and not in the cache yet, gone, or not this log's.
	chunk = &tetherv1alpha1.ConversationLogChunk{}
	return chunk, l.c.Get(ctx, key, chunk)
}

// checkChunk verifies that a chunk holds exactly the events its reference
// names, in order.
func checkChunk(ref tetherv1alpha1.LogChunkRef, events []tetherv1alpha1.LogEvent) error {
	if int64(len(events)) != ref.LastSeq-ref.FirstSeq+1 {
		return fmt.Errorf("chunk %s holds %d events, its index says %d..%d", ref.Name, len(events), ref.FirstSeq, ref.LastSeq)
	}
	for i := range events {
		if want := ref.FirstSeq + int64(i); events[i].Seq != want {
			return fmt.Errorf("chunk %s holds seq %d where %d belongs", ref.Name, events[i].Seq, want)
		}
	}
	return nil
}

func toEvent(e *tetherv1alpha1.LogEvent) eventlog.Event {
	out := eventlog.Event{Seq: e.Seq, Epoch: e.Epoch, Type: e.Type, ClientID: e.ClientID, Time: e.Time.Time}
	if e.Data != "" {
		out.Data = json.RawMessage(e.Data)
	}
	return out
}

// Bounds implements eventlog.Log.
func (l *Log) Bounds(ctx context.Context, k eventlog.Key) (eventlog.Bounds, error) {
	head, err := l.getHead(ctx, k)
	if err != nil {
		return eventlog.Bounds{}, err
	}
	return bounds(head), nil
}

// Trim implements eventlog.Log.
func (l *Log) Trim(ctx context.Context, k eventlog.Key, epoch int64, keep int) error {
	if err := eventlog.ValidateTrim(epoch, keep); err != nil {
		return err
	}
	for range maxAttempts {
		head, err := l.getHead(ctx, k)
		if err != nil {
			return err
		}
		if epoch < head.Spec.Epoch {
			return fmt.Errorf("%w: %s claimed at epoch %d, trim at %d", eventlog.ErrFenced, k, head.Spec.Epoch, epoch)
		}
		keepFrom := head.Spec.LastSeq - int64(keep) + 1
		if keepFrom <= head.Spec.FirstSeq {
			return nil
		}
		head.Spec.FirstSeq = keepFrom
		var dropped []tetherv1alpha1.LogChunkRef
		kept := head.Spec.Chunks[:0:0]
		for _, ref := range head.Spec.Chunks {
			if ref.LastSeq < keepFrom {
				dropped = append(dropped, ref)
			} else {
				kept = append(kept, ref)
			}
		}
		head.Spec.Chunks = kept
		head.Spec.Tail = slices.DeleteFunc(head.Spec.Tail, func(e tetherv1alpha1.LogEvent) bool { return e.Seq < keepFrom })
		dropped = append(dropped, dropStaleSnapshot(head)...)
		err = l.c.Update(ctx, head)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("kubelog: trimming %s: %w", k, err)
		}
		l.remember(head)
		l.deleteChunks(ctx, k, dropped)
		return nil
	}
	return fmt.Errorf("kubelog: trimming %s: still conflicting after %d attempts", k, maxAttempts)
}

// Delete implements eventlog.Log.
func (l *Log) Delete(ctx context.Context, k eventlog.Key) error {
	l.forget(k)
	head := &tetherv1alpha1.ConversationLog{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}
	if err := client.IgnoreNotFound(l.c.Delete(ctx, head)); err != nil {
		return fmt.Errorf("kubelog: deleting the log of %s: %w", k, err)
	}
	if err := l.c.DeleteAllOf(ctx, &tetherv1alpha1.ConversationLogChunk{}, client.InNamespace(k.Namespace),
		client.MatchingLabels{tetherv1alpha1.LogConversationLabel: nameHash(k.Name)}); err != nil {
		return fmt.Errorf("kubelog: deleting the chunks of %s: %w", k, err)
	}
	return nil
}

// Close implements eventlog.Log.
func (l *Log) Close() error { return nil }

func isUnknown(err error) bool {
	return errors.Is(err, eventlog.ErrUnknownConversation)
}

// backoff spreads out appenders that lost a resourceVersion race, so they do
// not collide again in lockstep.
func backoff(attempt int) {
	time.Sleep(time.Duration(rand.Int64N(int64(min(attempt, 10)+1) * int64(2*time.Millisecond)))) //nolint:gosec // jitter, not a secret
}
