package gateway_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/gateway"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
)

// claimedOnly is a Conversation cache that never shows a conversation while
// it is Rescheduling: it shows the last version before, until the new owner
// has claimed it. A loaded gateway's informer can look like that to a
// session: the revoke and the claim come in one batch, and the session reads
// the cache once both are in.
type claimedOnly struct {
	gateway.Conversations
	mu    sync.Mutex
	shown map[types.NamespacedName]*tetherv1alpha1.Conversation
}

func (c *claimedOnly) Get(ctx context.Context, key types.NamespacedName) (*tetherv1alpha1.Conversation, error) {
	conv, err := c.Conversations.Get(ctx, key)
	if err != nil || conv == nil {
		return conv, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if conv.Status.Phase == tetherv1alpha1.PhaseRescheduling && c.shown[key] != nil {
		return c.shown[key], nil
	}
	c.shown[key] = conv
	return conv, nil
}

// TestAMoveIsToldEvenWhenTheCacheSkipsIt: the owner of a conversation waiting
// on a human is drained and the conversation moves at its turn boundary, but
// the gateway's cache shows the move only once the new owner has claimed it
// (Rescheduling never appears in it). The client is still told the
// conversation moved (a Rescheduling status frame) before the new owner's
// prompt, on the same socket, and its answer is applied once.
func TestAMoveIsToldEvenWhenTheCacheSkipsIt(t *testing.T) {
	ns := namespace(t)
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{})
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.27.1", Port: port})
	key := createConversation(t, ns, "drained")
	testworker.WaitConversation(t, env.Client, key, "AwaitingInput on A", awaiting("approvals-a"))
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-b", IP: "127.0.27.2", Port: port})

	g := startGateway(t, func(cfg *gateway.Config) {
		cfg.Conversations = &claimedOnly{Conversations: cfg.Conversations, shown: map[types.NamespacedName]*tetherv1alpha1.Conversation{}}
	})
	c, r := connect(t, g.url(ns, key.Name))
	first := r.wait(t, "the prompt", 1, isType(protocol.TypePendingPrompt))

	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:"test"}}}`, tetherv1alpha1.DrainAnnotation))
	if err := env.Client.Patch(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvals-a"}},
		client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
	moving := r.wait(t, "a Rescheduling status frame", 1, isStatus(tetherv1alpha1.PhaseRescheduling))
	again := r.wait(t, "the prompt from the new owner", 2, isType(protocol.TypePendingPrompt))
	testworker.WaitConversation(t, env.Client, key, "AwaitingInput on B", awaiting("approvals-b"))
	if told, prompted := frameIndex(r, isStatus(tetherv1alpha1.PhaseRescheduling), 1), frameIndex(r, isType(protocol.TypePendingPrompt), 2); told > prompted {
		t.Fatalf("told of the move after the new owner's prompt (frames %d and %d)", told, prompted)
	}
	if again.Prompt.ID != first.Prompt.ID {
		t.Fatalf("the new owner's prompt %+v, the old one's %+v", again.Prompt, first.Prompt)
	}
	if _, err := c.Answer(again.Prompt.ID, "approve"); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "finished", 1, isFinished)
	wantEvents(t, r)
	if c.Binds() != 1 {
		t.Fatalf("the client bound %d times; the gateway should have held its socket", c.Binds())
	}
	t.Logf("told while moving: %q", moving.Message)
}

func isStatus(phase tetherv1alpha1.ConversationPhase) func(protocol.ServerFrame) bool {
	return func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeStatus && f.Phase == string(phase) }
}

// frameIndex is the position of the n-th frame (from 1) r delivered that
// satisfies want, or -1.
func frameIndex(r *recorder, want func(protocol.ServerFrame) bool, n int) int {
	for i, f := range r.Frames() {
		if want(f) {
			if n--; n == 0 {
				return i
			}
		}
	}
	return -1
}
