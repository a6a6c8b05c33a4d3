package runtime_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/internal/testing/testworker"
)

// slowClaims is a log whose claims take a while, as a long history's do
// on a loaded API server, and which counts the claims in flight at once.
type slowClaims struct {
	eventlog.Log
	delay time.Duration

	mu             sync.Mutex
	inFlight, most int
}

func (s *slowClaims) Claim(ctx context.Context, key eventlog.Key, epoch int64) (eventlog.Bounds, error) {
	s.mu.Lock()
	s.inFlight++
	s.most = max(s.most, s.inFlight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return eventlog.Bounds{}, ctx.Err()
	}
	return s.Log.Claim(ctx, key, epoch)
}

// TestClaimsRunTogether: a pod given many conversations at once (it takes
// over a lost pod's) claims them together, not one after another. With
// claims of 1 s each, eight conversations are all running within a few
// seconds; claimed one at a time, the last would wait eight.
func TestClaimsRunTogether(t *testing.T) {
	ctx := context.Background()
	pod := newPod(t, "unused") // a namespace of its own
	ns := pod.Namespace
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreKubernetes})
	log := &slowClaims{Log: kubelog.New(env.Client), delay: time.Second}
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.16.1", Port: port, Log: log})

	const n = 8
	for i := range n {
		conv := &tetherv1alpha1.Conversation{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("refund-%d", i)},
			Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
				Subjects: []string{"alice"}, InitialInput: fmt.Sprintf("refund order %d", i)},
		}
		if err := env.Client.Create(ctx, conv); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		testworker.WaitConversation(t, env.Client, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("refund-%d", i)}, "AwaitingInput",
			func(c *tetherv1alpha1.Conversation) bool { return c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput })
	}
	log.mu.Lock()
	most := log.most
	log.mu.Unlock()
	// The manager places them over a few hundred milliseconds; claims of a
	// second each overlap whenever the host claims more than one at once.
	if most < n/2 {
		t.Fatalf("at most %d claims ran at once; want most of the %d placed together", most, n)
	}
	t.Logf("%d conversations claimed, up to %d at once", n, most)
}
