package controllers

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// A conversation whose ownership changes (a placement, a revocation: each
// a new epoch) more than maxOwnershipChanges times within flapWindow is
// flapping: something keeps moving it (a wake and suspend loop, a crashing
// pod). The controller then stops suspending it until it settles, and
// says so once per window with a Warning event and a metric.
const (
	maxOwnershipChanges = 6
	flapWindow          = time.Minute
)

var flapsTotal = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "tether_conversation_flapping_total",
	Help: "Times a conversation was found changing owner more than 6 times a minute (suspension is held off while it does).",
})

// flapping reports whether changes (times of ownership changes, oldest
// first) hold more than maxOwnershipChanges within flapWindow before now.
func flapping(changes []time.Time, now time.Time) bool {
	n := 0
	for _, at := range changes {
		if now.Sub(at) < flapWindow {
			n++
		}
	}
	return n > maxOwnershipChanges
}

// ownershipHistory remembers the recent ownership changes the controller
// has seen of each conversation.
type ownershipHistory struct {
	mu    sync.Mutex
	convs map[types.NamespacedName]*ownershipTrack
}

type ownershipTrack struct {
	epoch    int64
	changes  []time.Time
	phases   []tetherv1alpha1.ConversationPhase // the phase at each change
	warnedAt time.Time
}

// observe records conv's epoch as seen at now and reports whether it is
// flapping, and, once per window, a description for the Warning event.
func (h *ownershipHistory) observe(conv *tetherv1alpha1.Conversation, now time.Time) (isFlapping bool, warn string) {
	var epoch int64
	if conv.Status.Lease != nil {
		epoch = conv.Status.Lease.Epoch
	}
	key := types.NamespacedName{Namespace: conv.Namespace, Name: conv.Name}
	h.mu.Lock()
	defer h.mu.Unlock()
	if conv.Status.Phase.IsFinished() {
		delete(h.convs, key) // nothing moves it again
		return false, ""
	}
	// A Suspended conversation is remembered only while its recent
	// changes are, so that an idle fleet costs nothing here. The price:
	// the wake that ends a quiet minute is not counted as a change.
	idle := conv.Status.Phase == tetherv1alpha1.PhaseSuspended
	if h.convs == nil {
		h.convs = map[types.NamespacedName]*ownershipTrack{}
	}
	t := h.convs[key]
	if t == nil && idle {
		return false, ""
	}
	if t == nil {
		t = &ownershipTrack{epoch: epoch}
		h.convs[key] = t
	}
	if epoch != t.epoch {
		t.epoch = epoch
		t.changes = append(t.changes, now)
		t.phases = append(t.phases, conv.Status.Phase)
	}
	for len(t.changes) > 0 && now.Sub(t.changes[0]) >= flapWindow {
		t.changes, t.phases = t.changes[1:], t.phases[1:]
	}
	if idle && len(t.changes) == 0 {
		delete(h.convs, key)
		return false, ""
	}
	if !flapping(t.changes, now) {
		return false, ""
	}
	if now.Sub(t.warnedAt) >= flapWindow {
		t.warnedAt = now
		names := make([]string, len(t.phases))
		for i, p := range t.phases {
			names[i] = string(p)
		}
		warn = strings.Join(names, " → ")
	}
	return true, warn
}

func (h *ownershipHistory) forget(key types.NamespacedName) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.convs, key)
}
