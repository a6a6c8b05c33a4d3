package controllers

import (
	"context"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// podLoad is a pod placement may use and the conversations it holds.
type podLoad struct {
	pod  *corev1.Pod
	load int32
}

// chooseLoadedPod is choosePod among the pods that hold conversations, and
// among all only when none of those has a free slot. A conversation moving
// off a drained pod goes there: an empty pod may be the next one the
// Agent's ReplicaSet removes, its deletion cost not yet updated for the
// conversation just placed on it.
func chooseLoadedPod(loads []podLoad, capacity int32) *corev1.Pod {
	var loaded []podLoad
	for _, l := range loads {
		if l.load > 0 {
			loaded = append(loaded, l)
		}
	}
	if pod := choosePod(loaded, capacity); pod != nil {
		return pod
	}
	return choosePod(loads, capacity)
}

// choosePod returns the least-loaded pod with a free slot, ties broken by pod
// name so that placement is deterministic; nil when every pod is full.
func choosePod(loads []podLoad, capacity int32) *corev1.Pod {
	sorted := append([]podLoad(nil), loads...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].load != sorted[j].load {
			return sorted[i].load < sorted[j].load
		}
		return sorted[i].pod.Name < sorted[j].pod.Name
	})
	if len(sorted) == 0 || sorted[0].load >= capacity {
		return nil
	}
	return sorted[0].pod
}

// reservationTTL bounds how long an assignment may stay invisible in the
// cache before placement stops counting it; the cache catches up in
// milliseconds, so this only matters if a watch event was lost.
const reservationTTL = 2 * time.Minute

// reservations remembers assignments this controller wrote that the informer
// cache may not show yet. Without them, a burst of placements would all read
// the same stale loads and pile onto one pod. Placement decisions are taken
// under its lock, so concurrent reconciles never double-book a slot.
//
// A reservation ends once the cache shows the conversation at the epoch the
// assignment wrote or a later one: from then on the cache's own count is
// right, wherever the conversation has gone since.
type reservations struct {
	mu      sync.Mutex
	entries map[string]map[types.UID]reservation // by namespace
}

type reservation struct {
	conv  types.NamespacedName
	pod   string
	epoch int64
	at    time.Time
}

func newReservations() *reservations {
	return &reservations{entries: map[string]map[types.UID]reservation{}}
}

// adjust adds to loads the assignments of namespace that the slot tracker
// does not count yet, and drops the reservations it has caught up with (or
// that are too old, or whose conversation has gone elsewhere or given its
// slot up). holder says where the tracker counts a conversation, from the
// same moment as loads. The tracker follows the informer's cache, so a
// conversation the cache shows at the assignment but the tracker does not
// count yet is still added. The caller holds the lock.
func (r *reservations) adjust(ctx context.Context, cache client.Reader, namespace string, loads []podLoad, holder func(types.UID) string, now time.Time) error {
	index := make(map[string]int, len(loads))
	for i, l := range loads {
		index[l.pod.Name] = i
	}
	add := func(pod string) {
		if i, ok := index[pod]; ok {
			loads[i].load++
		}
	}
	entries := r.entries[namespace]
	defer func() {
		if len(entries) == 0 {
			delete(r.entries, namespace)
		}
	}()
	for uid, res := range entries {
		if holder(uid) == res.pod || now.Sub(res.at) > reservationTTL {
			delete(entries, uid)
			continue
		}
		var cached tetherv1alpha1.Conversation
		if err := cache.Get(ctx, res.conv, &cached, client.UnsafeDisableDeepCopy); err != nil {
			if apierrors.IsNotFound(err) {
				delete(entries, uid)
				continue
			}
			return err
		}
		switch {
		case cached.UID != uid:
			delete(entries, uid)
		case cached.Status.Lease == nil || cached.Status.Lease.Epoch < res.epoch:
			add(res.pod) // the cache has not seen the assignment yet
		case cached.Status.Lease.Epoch == res.epoch && holdsSlot(&cached) && cached.Status.Owner.Name == res.pod:
			add(res.pod) // the cache has, the tracker not yet
		default:
			delete(entries, uid) // moved on since, or gave its slot up
		}
	}
	return nil
}

// reserve records that conv is being assigned to pod at epoch. The caller
// holds the lock.
func (r *reservations) reserve(conv *tetherv1alpha1.Conversation, pod string, epoch int64, now time.Time) {
	if r.entries[conv.Namespace] == nil {
		r.entries[conv.Namespace] = map[types.UID]reservation{}
	}
	r.entries[conv.Namespace][conv.UID] = reservation{conv: types.NamespacedName{Namespace: conv.Namespace, Name: conv.Name}, pod: pod, epoch: epoch, at: now}
}

// release forgets a reservation whose write failed.
func (r *reservations) release(conv *tetherv1alpha1.Conversation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.entries[conv.Namespace], conv.UID)
	if len(r.entries[conv.Namespace]) == 0 {
		delete(r.entries, conv.Namespace)
	}
}
