package kubelog

import (
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// TestKeyLocks: one key's holders take turns (the race detector sees the
// counter otherwise), another key is not held up by them, and once nobody
// holds or waits for a key no lock is kept for it.
func TestKeyLocks(t *testing.T) {
	var locks keyLocks
	a, b := types.NamespacedName{Namespace: "ns", Name: "a"}, types.NamespacedName{Namespace: "ns", Name: "b"}
	counter := 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 200 {
				unlock := locks.lock(a)
				counter++
				unlock()
			}
		})
	}
	wg.Wait()
	if counter != 16*200 {
		t.Fatalf("counter %d, want %d", counter, 16*200)
	}

	unlockA := locks.lock(a)
	done := make(chan struct{})
	go func() {
		locks.lock(b)()
		close(done)
	}()
	<-done // would hang if b waited for a
	if n := locks.held(); n != 1 {
		t.Fatalf("%d keys held with only a locked, want 1", n)
	}
	unlockA()
	if n := locks.held(); n != 0 {
		t.Fatalf("%d keys still have a lock with nobody holding one, want 0", n)
	}
}
