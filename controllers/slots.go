package controllers

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// slotTracker counts, from the Conversation informer's events, the slots
// each pod's conversations hold and the conversations that wait for one.
// Placement, the Agent controller and the wake-ups of waiting conversations
// read these counts instead of listing every conversation of an Agent on
// each decision: a placement costs O(pods), not O(conversations), and a
// pod's change reaches only the conversations that wait.
//
// It lags the informer's cache by the delivery of an event, never more:
// placement's reservations cover an assignment until the tracker counts it.
type slotTracker struct {
	mu      sync.RWMutex
	convs   map[types.UID]slotEntry
	loads   map[podRef]int32
	waiting map[agentRef]map[types.NamespacedName]struct{}
	// changed, when set, hears of each Agent whose counts changed, once
	// the tracker counts the change: the Agent controller reconciles from
	// it, so it never reads counts older than the event that woke it.
	changed chan<- event.GenericEvent
}

// podRef is a pod incarnation: a new pod with the same name is another.
type podRef struct{ namespace, name, uid string }

type agentRef struct{ namespace, name string }

// slotEntry is what one conversation counts for.
type slotEntry struct {
	pod     podRef // set while it holds a slot there
	agent   agentRef
	name    types.NamespacedName
	waiting bool // for a slot
}

func newSlotTracker() *slotTracker {
	return &slotTracker{convs: map[types.UID]slotEntry{}, loads: map[podRef]int32{}, waiting: map[agentRef]map[types.NamespacedName]struct{}{}}
}

// register feeds the tracker from the manager's Conversation informer.
func (s *slotTracker) register(ctx context.Context, mgr ctrl.Manager) error {
	informer, err := mgr.GetCache().GetInformer(ctx, &tetherv1alpha1.Conversation{})
	if err != nil {
		return err
	}
	_, err = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.observeObject(obj) },
		UpdateFunc: func(_, obj any) { s.observeObject(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if conv, ok := obj.(*tetherv1alpha1.Conversation); ok {
				s.forget(conv.UID)
			}
		},
	})
	return err
}

func (s *slotTracker) observeObject(obj any) {
	if conv, ok := obj.(*tetherv1alpha1.Conversation); ok {
		s.observe(conv)
	}
}

// observe counts conv as it is now.
func (s *slotTracker) observe(conv *tetherv1alpha1.Conversation) {
	e := slotEntry{agent: agentRef{conv.Namespace, conv.Spec.AgentRef.Name}, name: types.NamespacedName{Namespace: conv.Namespace, Name: conv.Name}}
	switch {
	case holdsSlot(conv):
		e.pod = podRef{conv.Namespace, conv.Status.Owner.Name, conv.Status.Owner.UID}
	case needsPlacement(conv) && conv.DeletionTimestamp.IsZero():
		e.waiting = true
	}
	s.mu.Lock()
	before, known := s.convs[conv.UID] // zero when unknown
	s.removeLocked(conv.UID)
	// Only what counts is kept: an idle fleet's Suspended and finished
	// conversations cost the tracker nothing.
	if e.pod != (podRef{}) || e.waiting {
		s.convs[conv.UID] = e
	}
	if e.pod != (podRef{}) {
		s.loads[e.pod]++
	}
	if e.waiting {
		if s.waiting[e.agent] == nil {
			s.waiting[e.agent] = map[types.NamespacedName]struct{}{}
		}
		s.waiting[e.agent][e.name] = struct{}{}
	}
	s.mu.Unlock()
	// (An unknown conversation counted nothing: before is zero.)
	if before.pod != e.pod || before.waiting != e.waiting {
		s.tell(e.agent)
		if known && before.agent != e.agent {
			s.tell(before.agent)
		}
	}
}

// tell wakes the Agent controller for agent.
func (s *slotTracker) tell(agent agentRef) {
	if s.changed != nil {
		a := &tetherv1alpha1.Agent{}
		a.Namespace, a.Name = agent.namespace, agent.name
		s.changed <- event.GenericEvent{Object: a}
	}
}

// forget drops a deleted conversation.
func (s *slotTracker) forget(uid types.UID) {
	s.mu.Lock()
	e, known := s.convs[uid]
	s.removeLocked(uid)
	s.mu.Unlock()
	if known && (e.pod != (podRef{}) || e.waiting) {
		s.tell(e.agent)
	}
}

func (s *slotTracker) removeLocked(uid types.UID) {
	e, ok := s.convs[uid]
	if !ok {
		return
	}
	delete(s.convs, uid)
	if e.pod != (podRef{}) {
		if s.loads[e.pod]--; s.loads[e.pod] <= 0 {
			delete(s.loads, e.pod)
		}
	}
	if e.waiting {
		delete(s.waiting[e.agent], e.name)
		if len(s.waiting[e.agent]) == 0 {
			delete(s.waiting, e.agent)
		}
	}
}

// slotView reads the tracker under the lock its read method holds: counts
// and holders from one moment.
type slotView struct{ s *slotTracker }

// load is how many slots pod (this incarnation) holds.
func (v slotView) load(namespace, name string, uid types.UID) int32 {
	return v.s.loads[podRef{namespace, name, string(uid)}]
}

// holder is the pod a conversation holds a slot on ("" for none).
func (v slotView) holder(uid types.UID) string { return v.s.convs[uid].pod.name }

// read calls fn with a view of one moment; fn must not call the tracker.
func (s *slotTracker) read(fn func(slotView) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return fn(slotView{s})
}

// waitingFor lists the conversations of an Agent that wait for a slot.
func (s *slotTracker) waitingFor(namespace, agent string) []types.NamespacedName {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]types.NamespacedName, 0, len(s.waiting[agentRef{namespace, agent}]))
	for name := range s.waiting[agentRef{namespace, agent}] {
		out = append(out, name)
	}
	return out
}

// waitingCount is how many conversations of an Agent wait for a slot.
func (s *slotTracker) waitingCount(namespace, agent string) int32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int32(len(s.waiting[agentRef{namespace, agent}])) //nolint:gosec // bounded by the conversations
}
