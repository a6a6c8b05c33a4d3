package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/internal/fencing"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
)

// initialInputID is the client id of a Conversation's spec.initialInput, so
// that an owner that claims the conversation again never delivers it twice.
const initialInputID = "tether-initial-input"

// Host runs the conversations the controller assigned to its pod: it claims
// each at the epoch of its assignment, drops any whose epoch or owner
// changed, and drops all of them when the pod's Lease is not held.
type Host struct {
	// Client reads Conversations (a cache restricted to this pod's is
	// fine); Direct reads and writes straight to the API server.
	Client client.Client
	Direct client.Client
	Pod    Pod
	Lease  *LeaseKeeper
	Log    eventlog.Log
	// Handler runs the turns of every conversation.
	Handler    conversation.Handler
	BusyPolicy tetherv1alpha1.BusyPolicy
	MaxQueued  int
	// Retention is the Agent's store.retention.maxEvents.
	Retention int
	// Recorder, if set, records Warning events on Conversations (a hole
	// found in an event log).
	Recorder events.EventRecorder
	// StopWait bounds how long DropAll waits for turns to end
	// (conversation.StopWait by default).
	StopWait time.Duration
	// MaxSocketsPerConversation bounds the sockets bound to one
	// conversation [64].
	MaxSocketsPerConversation int
	// ReplayBudget bounds the bytes every socket's replay holds at once, on
	// this host [32 MiB]: many sockets asking for long histories wait for
	// their turn instead of running the runtime out of memory.
	ReplayBudget int64
	// ClaimConcurrency is how many conversations the host claims at once
	// [8]. A pod that takes over a lost pod's conversations claims them
	// together: one at a time, each reading its history, the last of a
	// few dozen waited seconds, its clients held.
	ClaimConcurrency int

	budgetOnce sync.Once
	budget     *semaphore.Weighted

	dropping sync.Mutex // serializes DropAll
	mu       sync.Mutex
	running  map[types.NamespacedName]*hosted
	// retiring holds conversations let go of whose halt may not have
	// finished: a halt waits for an append in flight, and until it has
	// returned that append can still land. A new claim of the same key
	// halts them first, so no two instances of one conversation ever act
	// at once in this process (they would share the epoch, which fences
	// nothing between them).
	retiring map[types.NamespacedName][]*conversation.Conversation
	// registered is closed, and replaced, each time a conversation starts
	// serving sockets here (Await).
	registered chan struct{}
	// statusBases holds, per conversation run here, the Conversation as
	// this host last wrote its status (or as its claim saw it): the next
	// status write starts from it instead of a read
	// (fencing.UpdateStatusFrom).
	statusBases map[types.NamespacedName]*tetherv1alpha1.Conversation
}

type hosted struct {
	conv  *conversation.Conversation
	epoch int64
}

// replayBudget is the budget every conversation of the host shares.
func (h *Host) replayBudget() *semaphore.Weighted {
	h.budgetOnce.Do(func() { h.budget = conversation.NewReplayBudget(cmp.Or(h.ReplayBudget, 32<<20)) })
	return h.budget
}

// Get returns the conversation this host runs under key, if any.
func (h *Host) Get(key types.NamespacedName) (*conversation.Conversation, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.running[key]
	if !ok {
		return nil, false
	}
	select {
	case <-r.conv.Done():
		return nil, false
	default:
		return r.conv, true
	}
}

// claimWait bounds how long a socket for a conversation assigned to this
// pod waits for its claim (Await). The gateway's dial allows 5 s.
const claimWait = 2 * time.Second

// Await returns the conversation this host runs under key. One assigned to
// this pod whose claim has not finished yet is waited for, up to claimWait:
// a client moved here is connected the moment its conversation can serve
// it, rather than when the gateway next tries (it backs off, and learns of
// the claim only from the status written after it, through its watch).
func (h *Host) Await(ctx context.Context, key types.NamespacedName) (*conversation.Conversation, bool) {
	var deadline *time.Timer
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()
	for {
		h.mu.Lock()
		if h.registered == nil {
			h.registered = make(chan struct{})
		}
		registered := h.registered
		h.mu.Unlock()
		if c, ok := h.Get(key); ok {
			return c, true
		}
		if !h.assignedHere(ctx, key) {
			return nil, false
		}
		if deadline == nil {
			deadline = time.NewTimer(claimWait)
		}
		select {
		case <-registered:
		case <-time.After(25 * time.Millisecond): // the assignment may have moved on
		case <-deadline.C:
			return nil, false
		case <-ctx.Done():
			return nil, false
		}
	}
}

// assignedHere reports whether the Conversation under key is assigned to
// this pod, as far as its cache knows, and the pod's Lease is held (without
// it, no claim is made).
func (h *Host) assignedHere(ctx context.Context, key types.NamespacedName) bool {
	if h.Lease != nil && !h.Lease.Held() {
		return false
	}
	conv := &tetherv1alpha1.Conversation{}
	if err := h.Client.Get(ctx, key, conv); err != nil {
		return false
	}
	owner, lease := conv.Status.Owner, conv.Status.Lease
	return owner != nil && owner.Name == h.Pod.Name && lease != nil && lease.Holder == h.Pod.Name
}

// Reconcile claims, keeps or drops one conversation.
func (h *Host) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	conv := &tetherv1alpha1.Conversation{}
	err := h.Client.Get(ctx, req.NamespacedName, conv)
	if apierrors.IsNotFound(err) {
		h.drop(req.NamespacedName, "gone")
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	owner := conv.Status.Owner
	if owner == nil || owner.Name != h.Pod.Name || owner.UID != string(h.Pod.UID) || conv.Status.Lease == nil ||
		!conv.DeletionTimestamp.IsZero() || conv.Status.Phase == tetherv1alpha1.PhaseSuspended {
		h.drop(req.NamespacedName, "no longer assigned here")
		return ctrl.Result{}, nil
	}
	epoch := conv.Status.Lease.Epoch
	h.mu.Lock()
	current, ok := h.running[req.NamespacedName]
	h.mu.Unlock()
	if ok && current.epoch == epoch && !isDone(current.conv) {
		// Its pod drained or no longer: park it at a turn boundary, or go on.
		return ctrl.Result{}, current.conv.Drain(ctx, owner.Draining)
	}
	if ok {
		h.drop(req.NamespacedName, "assigned again at a new epoch")
	}
	if !h.Lease.Held() {
		// Claim only with a fresh Lease; the keeper's renewal brings us back.
		return ctrl.Result{RequeueAfter: 500 * time.Millisecond}, nil
	}
	return ctrl.Result{}, h.claim(ctx, conv, epoch)
}

// claim starts running a conversation assigned to this pod at epoch.
func (h *Host) claim(ctx context.Context, conv *tetherv1alpha1.Conversation, epoch int64) error {
	key := types.NamespacedName{Namespace: conv.Namespace, Name: conv.Name}
	began := time.Now()
	// An earlier instance here (the Lease was lost and is held again) must
	// have stopped writing before this one reads the log it restores from.
	h.awaitRetired(key)
	holder := fencing.Holder{Pod: h.Pod.Name, Epoch: epoch}
	h.setStatusBase(key, conv)
	c, err := conversation.Start(ctx, conversation.Config{
		Key:   eventlog.Key{Namespace: conv.Namespace, Name: conv.Name, UID: string(conv.UID)},
		Epoch: epoch, Log: h.Log, Handler: h.Handler, BusyPolicy: h.BusyPolicy, MaxQueued: h.MaxQueued, Retention: h.Retention,
		Status:         func(ctx context.Context, s conversation.Status) error { return h.writeStatus(ctx, key, holder, s) },
		Hole:           func(err error) { h.reportHole(conv, err) },
		MaxSubscribers: cmp.Or(h.MaxSocketsPerConversation, 64), ReplayBudget: h.replayBudget(),
		Finished: conv.Status.Phase.IsFinished(),
		Draining: conv.Status.Owner.Draining,
		// Serve sockets before the status says this pod owns it.
		Ready: func(c *conversation.Conversation) { h.register(key, c, epoch) },
	})
	if err != nil {
		h.setStatusBase(key, nil)
		if errors.Is(err, conversation.ErrNotOwner) {
			return nil // a newer epoch already claimed it; our watch will say so
		}
		return fmt.Errorf("claiming %s at epoch %d: %w", key, epoch, err)
	}
	if h.Lease != nil && !h.Lease.Held() {
		// Lost while claiming: DropAll ran before this one was registered.
		h.drop(key, "the pod's Lease is not held")
		return nil
	}
	// How long the claim took, and how long since the assignment (the
	// watch's delay and retries included): what a client waited on here.
	times := c.StartTimes()
	log := ctrl.LoggerFrom(ctx).WithValues("conversation", key, "epoch", epoch, "took", time.Since(began).Round(time.Millisecond),
		"storeClaim", times.Claim.Round(time.Millisecond), "read", times.Read.Round(time.Millisecond), "events", times.Events, "snapshotSeq", times.SnapshotSeq,
		"publish", times.Publish.Round(time.Millisecond))
	if l := conv.Status.Lease; l != nil && l.AcquireTime != nil {
		log = log.WithValues("sinceAssigned", time.Since(l.AcquireTime.Time).Round(time.Millisecond))
	}
	log.Info("claimed")

	if conv.Spec.InitialInput != "" {
		// Applied at most once, whoever claims: its client id is fixed. A
		// conversation that already finished takes no more input.
		_, err := c.Submit(ctx, protocol.ClientFrame{Type: protocol.TypeMessage, ID: initialInputID, Text: conv.Spec.InitialInput})
		var perr *protocol.Error
		finished := errors.As(err, &perr) && perr.Code == protocol.CodeFinished
		if err != nil && !finished {
			return fmt.Errorf("delivering the initial input of %s: %w", key, err)
		}
	}
	return nil
}

func (h *Host) register(key types.NamespacedName, c *conversation.Conversation, epoch int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running == nil {
		h.running = map[types.NamespacedName]*hosted{}
	}
	h.running[key] = &hosted{conv: c, epoch: epoch}
	if h.registered != nil {
		close(h.registered)
		h.registered = nil
	}
}

// writeStatus publishes an owner's view to the Conversation, fenced by its
// epoch.
func (h *Host) writeStatus(ctx context.Context, key types.NamespacedName, holder fencing.Holder, s conversation.Status) error {
	written, err := fencing.UpdateStatusFrom(ctx, h.statusBase(key), h.Direct, h.Direct.Status(), key, holder, func(conv *tetherv1alpha1.Conversation) error {
		st := &conv.Status
		now := metav1.Now()
		st.Phase = s.Phase
		st.LastSequence = max(st.LastSequence, s.LastSeq)
		st.Attached = s.Attached
		st.Parked = s.Parked
		if !s.DetachedAt.IsZero() && (st.LastActiveTime == nil || st.LastActiveTime.Time.Before(s.DetachedAt)) {
			st.LastActiveTime = ptr.To(metav1.NewTime(s.DetachedAt))
		}
		if s.Prompt != nil {
			st.Prompt = &tetherv1alpha1.Prompt{
				ID: s.Prompt.ID, Text: s.Prompt.Text, Options: s.Prompt.Options,
				AskedAt: metav1.NewTime(s.AskedAt), Sequence: s.PromptSeq,
			}
		} else {
			st.Prompt = nil
		}
		if st.StartTime == nil {
			st.StartTime = &now
		}
		ready := metav1.Condition{Type: string(tetherv1alpha1.ConditionReady), Status: metav1.ConditionTrue, Reason: string(tetherv1alpha1.ReasonClaimed),
			Message: "served by pod " + holder.Pod, LastTransitionTime: now}
		switch s.Phase {
		case tetherv1alpha1.PhaseSucceeded:
			st.CompletionTime = &now
			ready = metav1.Condition{Type: string(tetherv1alpha1.ConditionReady), Status: metav1.ConditionFalse, Reason: string(tetherv1alpha1.ReasonCompleted),
				Message: "the agent finished the conversation", LastTransitionTime: now}
		case tetherv1alpha1.PhaseFailed:
			st.CompletionTime = &now
			ready = metav1.Condition{Type: string(tetherv1alpha1.ConditionReady), Status: metav1.ConditionFalse, Reason: string(tetherv1alpha1.ReasonAgentFailed),
				Message: s.Message, LastTransitionTime: now}
		}
		ready.ObservedGeneration = conv.Generation
		meta.SetStatusCondition(&st.Conditions, ready)
		if s.Diverged != "" {
			meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: string(tetherv1alpha1.ConditionReplayDiverged), Status: metav1.ConditionTrue,
				Reason: string(tetherv1alpha1.ReasonReplayDiverged), Message: s.Diverged, ObservedGeneration: conv.Generation, LastTransitionTime: now})
		}
		return nil
	})
	if errors.Is(err, fencing.ErrFenced) {
		return fmt.Errorf("%w: %w", conversation.ErrNotOwner, err)
	}
	if err == nil {
		h.keepStatusBase(key, written)
	}
	return err
}

// statusBase returns the Conversation this host last wrote the status of,
// or saw when it claimed it, or nil.
func (h *Host) statusBase(key types.NamespacedName) *tetherv1alpha1.Conversation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.statusBases[key]
}

// setStatusBase keeps conv (not modified afterwards) as the base of key's
// next status write; nil forgets it.
func (h *Host) setStatusBase(key types.NamespacedName, conv *tetherv1alpha1.Conversation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.setStatusBaseLocked(key, conv)
}

// keepStatusBase is setStatusBase for a conversation still running here: a
// write that returns after its conversation stopped leaves nothing behind.
func (h *Host) keepStatusBase(key types.NamespacedName, conv *tetherv1alpha1.Conversation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.running[key]; ok {
		h.setStatusBaseLocked(key, conv)
	}
}

func (h *Host) setStatusBaseLocked(key types.NamespacedName, conv *tetherv1alpha1.Conversation) {
	if conv == nil {
		delete(h.statusBases, key)
		return
	}
	if h.statusBases == nil {
		h.statusBases = map[types.NamespacedName]*tetherv1alpha1.Conversation{}
	}
	h.statusBases[key] = conv
}

// drop stops running a conversation here.
func (h *Host) drop(key types.NamespacedName, why string) {
	h.mu.Lock()
	r, ok := h.running[key]
	if ok {
		h.retireLocked(key, r.conv)
	}
	h.mu.Unlock()
	if ok {
		r.conv.Stop(fmt.Errorf("%w: %s", conversation.ErrNotOwner, why), protocol.CloseNotOwner)
		h.retired(key, r.conv)
	}
}

// retireLocked moves a running conversation to the retiring ones.
func (h *Host) retireLocked(key types.NamespacedName, c *conversation.Conversation) {
	delete(h.running, key)
	delete(h.statusBases, key)
	if h.retiring == nil {
		h.retiring = map[types.NamespacedName][]*conversation.Conversation{}
	}
	h.retiring[key] = append(h.retiring[key], c)
}

// retired forgets a conversation whose halt has returned.
func (h *Host) retired(key types.NamespacedName, c *conversation.Conversation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	left := slices.DeleteFunc(h.retiring[key], func(r *conversation.Conversation) bool { return r == c })
	if len(left) == 0 {
		delete(h.retiring, key)
	} else {
		h.retiring[key] = left
	}
}

// awaitRetired halts every retiring instance of key (Halt is idempotent: it
// returns once the instance's append in flight, if any, has returned and
// nothing more can be appended).
func (h *Host) awaitRetired(key types.NamespacedName) {
	h.mu.Lock()
	earlier := slices.Clone(h.retiring[key])
	h.mu.Unlock()
	why := fmt.Errorf("%w: claimed again", conversation.ErrNotOwner)
	for _, c := range earlier {
		c.Halt(why, protocol.CloseNotOwner)
		h.retired(key, c)
	}
}

// DropAll stops every conversation: the pod's Lease is not held, or the
// runtime is shutting down. All are halted at once (turns cancelled, sockets
// closed), then waited for together, so a runtime with a hundred
// conversations stops in the time of one: at most StopWait.
func (h *Host) DropAll() {
	// A second caller (the Lease lost and a shutdown at once) returns only
	// once the first has let go of everything.
	h.dropping.Lock()
	defer h.dropping.Unlock()
	h.mu.Lock()
	dropped := make(map[types.NamespacedName]*conversation.Conversation, len(h.running))
	for key, r := range h.running {
		dropped[key] = r.conv
		h.retireLocked(key, r.conv)
	}
	h.mu.Unlock()
	why := fmt.Errorf("%w: the pod's Lease is not held", conversation.ErrNotOwner)
	for key, c := range dropped {
		c.Halt(why, protocol.CloseNotOwner)
		h.retired(key, c)
	}
	deadline := time.Now().Add(h.stopWait())
	for _, c := range dropped {
		c.Wait(deadline)
	}
}

func (h *Host) stopWait() time.Duration {
	if h.StopWait > 0 {
		return h.StopWait
	}
	return conversation.StopWait
}

func isDone(c *conversation.Conversation) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}
