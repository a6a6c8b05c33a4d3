package kubelog

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// keyLocks serializes work per key and holds a lock only while someone
// holds or waits for it: a process that has appended to a hundred thousand
// conversations keeps no lock for any it is not appending to now.
type keyLocks struct {
	mu    sync.Mutex
	locks map[types.NamespacedName]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int // holders and waiters; the entry goes when it drops to 0
}

// lock takes key's lock and returns its unlock.
func (k *keyLocks) lock(key types.NamespacedName) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[types.NamespacedName]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		defer k.mu.Unlock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
	}
}

// held is how many keys have a lock now.
func (k *keyLocks) held() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.locks)
}
