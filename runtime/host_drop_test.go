package runtime

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
)

// TestDropAllWaitsOnce: a runtime letting go of 100 conversations whose
// agent ignores cancellation stops in about one stop-wait, not a hundred:
// every conversation is halted first (its sockets closed), then all are
// waited for together.
func TestDropAllWaitsOnce(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	started := make(chan struct{}, 100)
	stubborn := conversation.HandlerFunc(func(context.Context, *conversation.Turn) error {
		started <- struct{}{}
		<-release // ignores its context, as a careless agent does
		return nil
	})
	const stopWait = 500 * time.Millisecond
	h := &Host{StopWait: stopWait}
	log := memory.New()
	var convs []*conversation.Conversation
	for i := range 100 {
		key := types.NamespacedName{Namespace: "ns", Name: fmt.Sprintf("c-%d", i)}
		c, err := conversation.Start(context.Background(), conversation.Config{
			Key: eventlog.Key{Namespace: key.Namespace, Name: key.Name}, Epoch: 1, Log: log, Handler: stubborn,
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Submit(context.Background(), protocol.ClientFrame{Type: protocol.TypeMessage, ID: "m-1", Text: "hello"}); err != nil {
			t.Fatal(err)
		}
		h.register(key, c, 1)
		convs = append(convs, c)
	}
	for range 100 {
		<-started
	}
	begin := time.Now()
	h.DropAll()
	took := time.Since(begin)
	for i, c := range convs {
		select {
		case <-c.Done():
		default:
			t.Fatalf("conversation %d still runs after DropAll", i)
		}
	}
	if _, ok := h.Get(types.NamespacedName{Namespace: "ns", Name: "c-0"}); ok {
		t.Fatal("the host still serves a dropped conversation")
	}
	// One stop-wait, not a hundred (50 s); the bound is generous.
	if took > 4*stopWait {
		t.Fatalf("DropAll of 100 stuck conversations took %s, want about one stop-wait (%s)", took, stopWait)
	}
	t.Logf("100 stuck conversations dropped in %s (stop-wait %s)", took.Round(time.Millisecond), stopWait)
}

// TestClaimRetriesStayShort: a claim that keeps failing (the store away for
// minutes) is tried again at most maxClaimBackoff later, however many
// times it failed, so a conversation is claimed soon after the store is
// back.
func TestClaimRetriesStayShort(t *testing.T) {
	limiter := claimRetries()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "c"}}
	var last time.Duration
	for range 100 {
		last = limiter.When(req)
	}
	if last > maxClaimBackoff {
		t.Fatalf("after 100 failed claims the next waits %s, want at most %s", last, maxClaimBackoff)
	}
	if first := claimRetries().When(req); first > 100*time.Millisecond {
		t.Fatalf("the first retry waits %s", first)
	}
}
