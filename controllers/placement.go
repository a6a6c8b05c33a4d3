package controllers

import (
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podLoad is a pod placement may use and the conversations it holds.
type podLoad struct {
	pod  *corev1.Pod
	load int32
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
type reservations struct {
	mu      sync.Mutex
	entries map[types.UID]reservation
}

type reservation struct {
	namespace, pod string
	at             time.Time
}

func newReservations() *reservations {
	return &reservations{entries: map[types.UID]reservation{}}
}

// adjust corrects loads counted from the cache with the reservations of
// namespace. owners maps each conversation counted to the pod the cache shows
// it on. Reservations the cache has caught up with, or that are too old, are
// dropped. The caller holds the lock.
func (r *reservations) adjust(namespace string, loads []podLoad, owners map[types.UID]string, now time.Time) {
	index := make(map[string]int, len(loads))
	for i, l := range loads {
		index[l.pod.Name] = i
	}
	for uid, res := range r.entries {
		if res.namespace != namespace {
			continue
		}
		cached := owners[uid]
		if cached == res.pod || now.Sub(res.at) > reservationTTL {
			delete(r.entries, uid)
			continue
		}
		if i, ok := index[cached]; ok && cached != "" {
			loads[i].load--
		}
		if i, ok := index[res.pod]; ok {
			loads[i].load++
		}
	}
}

// reserve records that conversation uid is being assigned to pod. The caller
// holds the lock.
func (r *reservations) reserve(uid types.UID, namespace, pod string, now time.Time) {
	r.entries[uid] = reservation{namespace: namespace, pod: pod, at: now}
}

// release forgets a reservation whose write failed.
func (r *reservations) release(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.entries, uid)
}
