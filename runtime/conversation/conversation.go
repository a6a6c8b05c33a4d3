package conversation

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/internal/sharedctx"
	"tether.dev/tether/protocol"
)

// errStoreUnavailable marks a write of the conversation that failed in the
// store (it may have landed): a turn that meets one is run again once the
// store is back, never failed for it.
var errStoreUnavailable = errors.New("the event log is unavailable")

// ErrNotOwner means this owner was fenced: a newer epoch claimed the
// conversation. The conversation stopped; sockets bound to it are closed with
// protocol.CloseNotOwner.
var ErrNotOwner = errors.New("conversation: no longer the owner")

// Status is what the owner publishes to the Conversation's status.
type Status struct {
	Phase   tetherv1alpha1.ConversationPhase
	Prompt  *PromptData
	AskedAt time.Time
	// PromptSeq is the sequence number of the prompt event.
	PromptSeq int64
	LastSeq   int64
	// Message explains a Failed phase.
	Message string
	// Attached is true while a socket is bound; DetachedAt is when the last
	// one went (zero if none has). A conversation with a client attached
	// is not idle, and its idle clock restarts when the last one leaves.
	Attached   bool
	DetachedAt time.Time
	// Diverged, when set, says where a replayed turn diverged from what
	// was recorded (the ReplayDiverged condition).
	Diverged string
	// Parked says the conversation is draining and at a turn boundary
	// (Drain): it can move without cutting a turn short.
	Parked bool
}

// Config is what an owner runs a conversation with.
type Config struct {
	Key     eventlog.Key
	Epoch   int64
	Log     eventlog.Log
	Handler Handler
	// BusyPolicy and MaxQueued come from the Agent.
	BusyPolicy tetherv1alpha1.BusyPolicy
	MaxQueued  int
	// Status publishes a change of phase or prompt, in order. An error
	// wrapping ErrNotOwner stops the conversation.
	Status func(context.Context, Status) error
	// Retention is how many events to keep (the Agent's
	// store.retention.maxEvents); older ones are trimmed as the log grows.
	// Zero keeps everything.
	Retention int
	// SubscriberBuffer bounds each bound socket's queue (256 by default).
	SubscriberBuffer int
	// MaxSubscribers bounds the sockets bound at once (unbounded when 0).
	MaxSubscribers int
	// ReplayBudget, if set, bounds the bytes every replay sharing it holds
	// at once (NewReplayBudget).
	ReplayBudget *semaphore.Weighted
	// Hole, if set, is told when the event log was found to have a hole:
	// the history is incomplete and an operator must look (a Warning event,
	// a metric). Reads that find one fail; nothing is served as complete.
	Hole func(error)
	// Ready, if set, is given the conversation once it can serve sockets
	// and before its status is first published: whoever sees the status
	// name this owner can connect at once.
	Ready func(*Conversation)
	// Finished says the Conversation's status has it finished. Its log takes
	// no more writes, so it is opened for reading: not claimed, its status
	// not written again. An owner taking its pod's conversations up again
	// (its Lease lost and held again) has hundreds of finished ones that
	// it serves the history of, and claiming each cost writes that held
	// back the claims of live ones. If its log says otherwise, it is
	// claimed as any other.
	Finished bool
	// Draining starts the conversation drained (Drain): its owner pod was
	// being drained when it claimed it.
	Draining bool
	// SnapshotEvery overrides snapshotEvery (tests).
	SnapshotEvery int
	Now           func() time.Time
}

// Conversation is one conversation run by its owner.
type Conversation struct {
	cfg Config

	// mu serializes every change: appends, state, subscribers. It is held
	// across a log append and a status write (with its conflict retries)
	// on purpose: an event is applied to the state and fanned out to every
	// socket in the order the log took it. A socket's replay is read
	// outside it (replay_stream.go): binding notes where the replay ends
	// and queues live frames from there, so it sees each event once. The
	// cost: while the store or the API server is slow, this conversation's
	// next append, its deltas and a socket binding to it wait behind the
	// slow call (other conversations do not); a bound socket's live frames
	// are already queued and flow. Clients' messages that wait for it
	// while a write is in flight go out together in the next write
	// (groupcommit.go).
	mu      sync.Mutex
	st      *state
	replay  []eventlog.Event // the interrupted turn's recorded events, still to match
	running bool
	cancel  context.CancelFunc // cancels the running turn
	answers chan answerFor     // hands an answer to the waiting Ask
	subs    map[*Subscription]struct{}
	dirty   bool // an append's outcome is unknown: resync before the next
	// agentLost counts the turn's runs in a row that lost the agent's
	// process (ErrAgentLost), for the pause before the next.
	agentLost int
	// pending is agent output (messages, checkpoints) recorded but not yet
	// written: it goes out with the next append, so that a turn's events
	// take as few writes as its durable points allow (flushLocked).
	pending []eventlog.Event
	first   int64 // the first retained sequence number, as far as this owner knows
	// firstUnknown says a trim's outcome is unknown: first may be behind
	// the store's until the store is asked again.
	firstUnknown bool
	// logID identifies the log's history (eventlog.Bounds.LogID), as the
	// claim found it; it does not change while this owner holds it.
	logID string
	// detachedAt is when the last bound socket went.
	detachedAt time.Time
	// diverged says where a replayed turn last diverged, for the status.
	diverged string
	// draining stops turns from starting (Drain); waitingOn is the seq of
	// the question the running turn waits on (0: none); withheld is an
	// answer taken while draining, kept from the turn so that it moves at
	// a boundary.
	draining  bool
	waitingOn int64
	withheld  *answerFor

	// published is the status last written, and when.
	published   *Status
	publishedAt time.Time

	// started says where Start spent its time.
	started StartTimes
	// snapSeq is the seq of the last snapshot saved or tried, or of the
	// one restored from.
	snapSeq int64

	// inbox holds clients' messages waiting for mu, which the next
	// append takes along (groupcommit.go).
	inbox inbox

	wake     chan struct{}
	stopped  chan struct{}
	stopErr  error
	loopDone chan struct{}
}

// StartTimes says where Start spent its time: what a client waiting on a
// new owner waited for.
type StartTimes struct {
	// Claim is the store's claim (or, for a finished conversation, its
	// bounds), with the first events when the store reads them with it
	// (eventlog.ClaimReader).
	Claim time.Duration
	// Read is reading the rest of the retained history, after the
	// snapshot restored from (SnapshotSeq; 0 for none); Events is all
	// that was read.
	Read        time.Duration
	Events      int
	SnapshotSeq int64
	// Publish is the first status write.
	Publish time.Duration
}

// StartTimes says where Start spent its time.
func (c *Conversation) StartTimes() StartTimes { return c.started }

// answerFor is an answer, and the sequence number of the prompt it
// answers: Ask takes only the answer to the question it asked.
type answerFor struct {
	promptSeq int64
	answer    protocol.AnswerData
}

// statusRefresh bounds how stale status.lastSequence gets while the phase
// and prompt stay the same: a turn that changes nothing else is not worth an
// API write per message.
const statusRefresh = 10 * time.Second

// StopWait bounds how long Stop waits for a running turn to notice; a
// handler that ignores its context is left behind rather than holding the
// runtime up.
const StopWait = 10 * time.Second

// Start claims the conversation's log at cfg.Epoch (opens it, when
// cfg.Finished), restores the conversation from it, publishes its status and
// starts running turns.
func Start(ctx context.Context, cfg Config) (*Conversation, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SubscriberBuffer == 0 {
		cfg.SubscriberBuffer = 256
	}
	if cfg.MaxQueued == 0 {
		cfg.MaxQueued = 16
	}
	bounds, st, times, err := load(ctx, cfg)
	if err != nil {
		if errors.Is(err, eventlog.ErrFenced) {
			return nil, fmt.Errorf("%w: %w", ErrNotOwner, err)
		}
		if errors.Is(err, eventlog.ErrHole) && cfg.Hole != nil {
			cfg.Hole(err)
		}
		return nil, err
	}
	if cfg.Finished && !st.finished {
		cfg.Finished = false
		return Start(ctx, cfg)
	}
	c := &Conversation{
		cfg: cfg, st: st, first: bounds.FirstSeq, logID: bounds.LogID, draining: cfg.Draining, snapSeq: max(times.SnapshotSeq, bounds.FirstSeq-1),
		answers: make(chan answerFor, 1), subs: map[*Subscription]struct{}{},
		wake: make(chan struct{}, 1), stopped: make(chan struct{}), loopDone: make(chan struct{}),
		started: times,
	}
	if cfg.Ready != nil {
		cfg.Ready(c)
	}
	c.mu.Lock()
	if !cfg.Finished { // a finished one's status says so already
		began := time.Now()
		err = c.publishLocked(ctx)
		c.started.Publish = time.Since(began)
	}
	if err != nil {
		c.stopLocked(err, protocol.CloseNotOwner)
		close(c.loopDone)
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	go func() {
		defer close(c.loopDone)
		c.loop(context.WithoutCancel(ctx))
		if f, ok := cfg.Handler.(Forgetter); ok {
			f.Forget(cfg.Key)
		}
	}()
	c.signal()
	return c, nil
}

// load claims the conversation's log (opens it, when cfg.Finished) and
// restores its state: from the store's snapshot and the events after it,
// when the store keeps one (eventlog.ClaimReader), from the whole retained
// history otherwise.
func load(ctx context.Context, cfg Config) (eventlog.Bounds, *state, StartTimes, error) {
	var (
		times  StartTimes
		bounds eventlog.Bounds
		snap   *eventlog.Snapshot
		first  []eventlog.Event // read with the claim, when the store can
		err    error
	)
	began := time.Now()
	cr, claimReads := cfg.Log.(eventlog.ClaimReader)
	switch {
	case cfg.Finished:
		bounds, err = cfg.Log.Bounds(ctx, cfg.Key)
	case claimReads:
		bounds, snap, first, err = cr.ClaimRead(ctx, cfg.Key, cfg.Epoch)
	default:
		bounds, err = cfg.Log.Claim(ctx, cfg.Key, cfg.Epoch)
	}
	times.Claim = time.Since(began)
	if err != nil {
		return bounds, nil, times, err
	}
	began = time.Now()
	st := &state{applied: map[string]int64{}}
	after := bounds.FirstSeq - 1
	if snap != nil {
		if restored, err := restoreSnapshot(*snap); err == nil {
			st, after, times.SnapshotSeq = restored, snap.Seq, snap.Seq
		} else {
			first = nil // the events after a snapshot not used: read them all
		}
	}
	if len(first) > 0 {
		after = first[len(first)-1].Seq
	}
	rest, err := readRange(ctx, cfg.Log, cfg.Key, after, bounds.LastSeq)
	events := slices.Concat(first, rest)
	times.Read, times.Events = time.Since(began), len(events)
	if err != nil {
		return bounds, nil, times, err
	}
	for _, e := range events {
		if err := st.apply(e); err != nil {
			return bounds, nil, times, fmt.Errorf("restoring %s: event %d: %w", cfg.Key, e.Seq, err)
		}
	}
	return bounds, st, times, nil
}

// snapshotEvery is how many events an owner appends between two snapshots
// of a conversation's state, when its store keeps them: a new owner then
// reads at most about this many events (and the turn in progress) however
// long the history.
const snapshotEvery = 500

// snapshotDueLocked returns the snapshot to save now, at a turn boundary,
// if the store keeps them and snapshotEvery events were appended since the
// last one; nil otherwise.
func (c *Conversation) snapshotDueLocked() *eventlog.Snapshot {
	if _, ok := c.cfg.Log.(eventlog.Snapshotter); !ok || c.isStopped() || c.st.last-c.snapSeq < cmp.Or(int64(c.cfg.SnapshotEvery), snapshotEvery) {
		return nil
	}
	c.snapSeq = c.st.last // tried once per interval, saved or not
	data, err := c.st.snapshot(c.first)
	if err != nil || len(data) > eventlog.MaxSnapshotBytes {
		return nil // too large to keep: the history is read whole
	}
	return &eventlog.Snapshot{Seq: c.st.last, Data: data}
}

// saveSnapshot saves a snapshot. A failure costs the next owner a longer
// read, nothing else: a fenced owner learns it at its next append.
func (c *Conversation) saveSnapshot(ctx context.Context, snap eventlog.Snapshot) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = c.cfg.Log.(eventlog.Snapshotter).SaveSnapshot(ctx, c.cfg.Key, c.cfg.Epoch, snap)
}

// readRange reads events after..last.
func readRange(ctx context.Context, log eventlog.Log, key eventlog.Key, after, last int64) ([]eventlog.Event, error) {
	var out []eventlog.Event
	for after < last {
		batch, err := log.Read(ctx, key, after, eventlog.MaxReadEvents)
		if err != nil {
			return nil, err
		}
		if len(batch) == 0 {
			break
		}
		for _, e := range batch {
			if e.Seq <= last {
				out = append(out, e)
			}
		}
		after = batch[len(batch)-1].Seq
	}
	return out, nil
}

// reportHole tells Config.Hole of a hole that err reports.
func (c *Conversation) reportHole(err error) {
	if errors.Is(err, eventlog.ErrHole) && c.cfg.Hole != nil {
		c.cfg.Hole(err)
	}
}

// history reads the last MaxHistoryEvents events before seq before.
func (c *Conversation) history(ctx context.Context, before int64) ([]eventlog.Event, bool, error) {
	c.mu.Lock()
	first := c.first
	c.mu.Unlock()
	after := max(first-1, before-1-MaxHistoryEvents)
	events, err := readRange(ctx, c.cfg.Log, c.cfg.Key, after, before-1)
	if err != nil {
		c.reportHole(err)
		return nil, false, err
	}
	return events, after == 0, nil
}

// Done is closed when the conversation stopped; Err says why.
func (c *Conversation) Done() <-chan struct{} { return c.stopped }

// Err is why the conversation stopped: ErrNotOwner, or nil after Stop.
func (c *Conversation) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopErr
}

// Stop stops running the conversation (the owner let go of it), closes the
// bound sockets with code, and waits up to StopWait for the running turn to
// end.
func (c *Conversation) Stop(err error, code int) {
	c.Halt(err, code)
	c.Wait(time.Now().Add(StopWait))
}

// Halt stops the conversation as Stop does, without waiting: its turn is
// cancelled and its sockets are closed. An owner letting go of many halts
// them all, then waits once.
func (c *Conversation) Halt(err error, code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked(err, code)
}

// Wait waits until the halted conversation's turn has ended, or deadline;
// it reports whether the turn ended.
func (c *Conversation) Wait(deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.loopDone:
		return true
	case <-t.C:
		return false
	}
}

func (c *Conversation) stopLocked(err error, code int) {
	if c.isStopped() {
		return
	}
	c.stopErr = err
	close(c.stopped)
	if c.cancel != nil {
		c.cancel()
	}
	for s := range c.subs {
		s.closeLocked(code, "conversation moved")
	}
}

// isStopped reports whether Stop (or a fenced write) ended the conversation.
func (c *Conversation) isStopped() bool {
	select {
	case <-c.stopped:
		return true
	default:
		return false
	}
}

func (c *Conversation) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// appendLocked appends events under the owner's epoch and applies them. A
// fenced append stops the conversation.
// The pending agent output goes first, in the same write when it fits.
func (c *Conversation) appendLocked(ctx context.Context, events ...eventlog.Event) (int64, error) {
	if c.isStopped() {
		return 0, ErrNotOwner
	}
	if len(c.pending) > 0 {
		// A bad event must not take the pending output down with it.
		if err := eventlog.ValidateAppend(c.cfg.Epoch, events); err != nil {
			return 0, err
		}
		if fitsOneAppend(c.pending, events) {
			events = append(c.pending, events...)
			c.pending = nil
		} else if err := c.flushLocked(ctx); err != nil {
			return 0, err
		}
	}
	if c.dirty {
		if err := c.resyncLocked(ctx); err != nil {
			if errors.Is(err, ErrNotOwner) {
				return 0, err
			}
			return 0, fmt.Errorf("%w: %w", errStoreUnavailable, err)
		}
	}
	// Clients' messages waiting for the lock go in the same write
	// (groupcommit.go); what is returned is the last of events.
	taken := c.takeWaitingLocked(events)
	all := events
	ctxs := []context.Context{ctx}
	if len(taken) > 0 {
		all = slices.Clip(events)
	}
	for _, m := range taken {
		all = append(all, m.event)
		ctxs = append(ctxs, m.ctx)
	}
	ctx, release := sharedctx.UntilAllDone(ctxs...)
	defer release()
	last, err := c.writeLocked(ctx, all)
	c.settleTakenLocked(taken, err)
	if err != nil {
		return 0, err
	}
	return last - int64(len(all)-len(events)), nil
}

// writeLocked appends events and applies them.
func (c *Conversation) writeLocked(ctx context.Context, events []eventlog.Event) (int64, error) {
	last, err := c.cfg.Log.Append(ctx, c.cfg.Key, c.cfg.Epoch, events)
	switch {
	case errors.Is(err, eventlog.ErrFenced):
		c.stopLocked(ErrNotOwner, protocol.CloseNotOwner)
		return 0, fmt.Errorf("%w: %w", ErrNotOwner, err)
	case errors.Is(err, eventlog.ErrInvalid):
		return 0, err
	case err != nil:
		// It may have landed: learn what the log holds before the next.
		c.dirty = true
		return 0, fmt.Errorf("%w: %w", errStoreUnavailable, err)
	}
	first := last - int64(len(events)) + 1
	if first != c.st.last+1 {
		// Another writer at this epoch (an earlier instance of this owner
		// whose append landed late) put events before these: read them and
		// these back in the log's order. If that fails, the next append or
		// submit does it first.
		c.dirty = true
		if err := c.resyncLocked(ctx); err == nil {
			c.trimLocked(ctx)
		}
		return last, nil
	}
	now := c.cfg.Now()
	for i := range events {
		e := events[i]
		e.Seq, e.Epoch, e.Time = first+int64(i), c.cfg.Epoch, now
		if err := c.st.apply(e); err != nil {
			return 0, err
		}
		c.broadcastLocked(clientFrame(e))
	}
	c.trimLocked(ctx)
	return last, nil
}

// flushLocked writes the pending agent output, if any.
func (c *Conversation) flushLocked(ctx context.Context) error {
	if len(c.pending) == 0 {
		return nil
	}
	events := c.pending
	c.pending = nil
	_, err := c.appendLocked(ctx, events...)
	return err
}

// pendLocked records agent output to be written with the next append; past
// maxPending events or maxPendingBytes it is written now.
func (c *Conversation) pendLocked(ctx context.Context, e eventlog.Event) error {
	if err := eventlog.ValidateAppend(c.cfg.Epoch, []eventlog.Event{e}); err != nil {
		return err
	}
	c.pending = append(c.pending, e)
	if len(c.pending) >= maxPending || eventlog.BatchBytes(c.pending) >= maxPendingBytes {
		return c.flushLocked(ctx)
	}
	return nil
}

// maxPending and maxPendingBytes bound the agent output held back for the
// next write.
const (
	maxPending      = 64
	maxPendingBytes = eventlog.MaxBatchBytes / 2
)

// fitsOneAppend reports whether a and b make one append within the store's
// limits.
func fitsOneAppend(a, b []eventlog.Event) bool {
	return len(a)+len(b) <= eventlog.MaxBatchEvents && eventlog.BatchBytes(a)+eventlog.BatchBytes(b) <= eventlog.MaxBatchBytes
}

// trimLocked applies the retention once the log holds a tenth more than it
// should, so that trimming costs one write per many appends. A failed trim
// is tried again later; nothing depends on it.
func (c *Conversation) trimLocked(ctx context.Context) {
	keep := int64(c.cfg.Retention)
	if keep <= 0 || c.st.last-c.first+1 <= keep+max(keep/10, 1) {
		return
	}
	switch err := c.cfg.Log.Trim(ctx, c.cfg.Key, c.cfg.Epoch, int(keep)); {
	case err == nil:
		c.first = c.st.last - keep + 1
	case errors.Is(err, eventlog.ErrFenced):
		c.stopLocked(ErrNotOwner, protocol.CloseNotOwner)
	default:
		c.firstUnknown = true // it may have been applied
	}
}

// resyncLocked reads what landed after the last event this owner knows of.
func (c *Conversation) resyncLocked(ctx context.Context) error {
	bounds, err := c.cfg.Log.Bounds(ctx, c.cfg.Key)
	if err != nil {
		return err
	}
	if bounds.Epoch > c.cfg.Epoch {
		c.stopLocked(ErrNotOwner, protocol.CloseNotOwner)
		return ErrNotOwner
	}
	events, err := readRange(ctx, c.cfg.Log, c.cfg.Key, c.st.last, bounds.LastSeq)
	if err != nil {
		c.reportHole(err)
		return err
	}
	for _, e := range events {
		if err := c.st.apply(e); err != nil {
			return err
		}
		c.broadcastLocked(clientFrame(e))
	}
	c.dirty = false
	if len(events) > 0 {
		// What landed may be a user message whose turn is still to run.
		c.signal()
	}
	return nil
}

// publishLocked reports the current phase and prompt.
func (c *Conversation) publishLocked(ctx context.Context) error {
	if c.cfg.Status == nil {
		return nil
	}
	s := Status{Phase: tetherv1alpha1.PhaseRunning, LastSeq: c.st.last, Attached: len(c.subs) > 0, DetachedAt: c.detachedAt, Diverged: c.diverged,
		Parked: c.parkedLocked()}
	switch {
	case c.st.finished && c.st.failed:
		s.Phase, s.Message = tetherv1alpha1.PhaseFailed, c.st.outcome
	case c.st.finished:
		s.Phase = tetherv1alpha1.PhaseSucceeded
	case c.st.prompt != nil:
		s.Phase, s.Prompt, s.PromptSeq, s.AskedAt = tetherv1alpha1.PhaseAwaitingInput, c.st.prompt, c.st.promptSeq, c.promptTime()
	}
	now := c.cfg.Now()
	if c.published != nil && sameStatus(*c.published, s) && now.Sub(c.publishedAt) < statusRefresh {
		return nil
	}
	if err := c.cfg.Status(ctx, s); err != nil {
		if errors.Is(err, ErrNotOwner) {
			c.stopLocked(ErrNotOwner, protocol.CloseNotOwner)
		}
		return err
	}
	c.published, c.publishedAt = &s, now
	c.broadcastLocked(protocol.StatusFrame(string(s.Phase), ""))
	return nil
}

// sameStatus reports whether b says nothing a and its sequence number do
// not.
func sameStatus(a, b Status) bool {
	return a.Phase == b.Phase && a.Message == b.Message && a.PromptSeq == b.PromptSeq && (a.Prompt == nil) == (b.Prompt == nil) &&
		a.Attached == b.Attached && a.Diverged == b.Diverged && a.Parked == b.Parked
}

// publishAttachment publishes a change of Attached, from its own goroutine:
// sockets come and go while a turn waits on a human, and neither the socket
// nor the turn should wait for an API write.
func (c *Conversation) publishAttachment() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isStopped() {
		return
	}
	// A failure is published again with the next change; the controller
	// acts on a status that says too little only by suspending later.
	_ = c.publishLocked(context.Background())
}

func (c *Conversation) promptTime() time.Time {
	for _, e := range slices.Backward(c.st.turnEvents) {
		if e.Seq == c.st.promptSeq {
			return e.Time
		}
	}
	return c.cfg.Now()
}

func (c *Conversation) lastCheckpoint() json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.checkpoint
}
