package runtime

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/agents"
)

// gatedLog holds appends while its gate is shut, as a store does whose
// API server is going away: the append is in flight, and lands later.
type gatedLog struct {
	eventlog.Log
	shut    atomic.Bool
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
}

// release opens the gate for good.
func (g *gatedLog) release() {
	g.shut.Store(false)
	g.once.Do(func() { close(g.open) })
}

func (g *gatedLog) Append(ctx context.Context, k eventlog.Key, epoch int64, events []eventlog.Event) (int64, error) {
	if g.shut.Load() {
		g.entered <- struct{}{}
		<-g.open
	}
	return g.Log.Append(ctx, k, epoch, events)
}

// TestRetakeAfterLeaseLossSeesTheLastAppend: the pod's Lease is lost while
// an answer's append is in flight, and held again before that append has
// returned. The conversation is claimed again by the same pod at the same
// epoch, which fences nothing between the two instances: the new one must
// not start until the old one can no longer write, and must then know of
// the answer (acknowledge it again as a duplicate, not apply it twice).
func TestRetakeAfterLeaseLossSeesTheLastAppend(t *testing.T) {
	ctx := context.Background()
	scheme := k8sruntime.NewScheme()
	if err := tetherv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pod := Pod{Namespace: "ns", Name: "approvals-0", UID: "pod-uid"}
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "refund", UID: "conv-uid"},
		Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
			InitialInput: "refund order 1234"},
		Status: tetherv1alpha1.ConversationStatus{
			Owner: &tetherv1alpha1.OwnerPod{Name: pod.Name, UID: string(pod.UID)},
			Lease: &tetherv1alpha1.ConversationLease{Holder: pod.Name, Epoch: 1},
		},
	}
	api := fake.NewClientBuilder().WithScheme(scheme).WithObjects(conv).WithStatusSubresource(conv).Build()
	log := &gatedLog{Log: memory.New(), entered: make(chan struct{}, 1), open: make(chan struct{})}
	h := &Host{Client: api, Direct: api, Pod: pod, Log: log, Handler: agents.Approval, StopWait: 500 * time.Millisecond}
	key := types.NamespacedName{Namespace: "ns", Name: "refund"}
	t.Cleanup(h.DropAll)
	t.Cleanup(log.release) // runs first

	if err := h.claim(ctx, conv, 1); err != nil {
		t.Fatal(err)
	}
	first, _ := h.Get(key)
	var prompt *tetherv1alpha1.Prompt
	await.Until(t, 10*time.Second, "the prompt in the status", func() bool {
		var c tetherv1alpha1.Conversation
		if err := api.Get(ctx, client.ObjectKeyFromObject(conv), &c); err != nil {
			return false
		}
		prompt = c.Status.Prompt
		return prompt != nil
	})
	answer := protocol.ClientFrame{Type: protocol.TypeAnswer, ID: "answer-1", PromptID: prompt.ID, Text: "approve"}

	// The answer's append is in flight when the Lease goes.
	log.shut.Store(true)
	acked := make(chan protocol.ServerFrame, 1)
	go func() {
		ack, err := first.Submit(ctx, answer)
		if err != nil {
			t.Errorf("the answer to the first instance: %v", err)
		}
		acked <- ack
	}()
	<-log.entered
	dropped := make(chan struct{})
	go func() { h.DropAll(); close(dropped) }()
	await.Until(t, 5*time.Second, "the first instance let go of", func() bool {
		_, running := h.Get(key)
		return !running
	})
	// The Lease is held again: the controller's queue claims it anew.
	claimed := make(chan error, 1)
	go func() { claimed <- h.claim(ctx, conv, 1) }()
	await.Stays(t, 500*time.Millisecond, "no second instance while the first's append is in flight", func() bool {
		_, running := h.Get(key)
		return !running
	})

	// The append lands.
	log.release()
	first1 := <-acked
	<-dropped
	if err := <-claimed; err != nil {
		t.Fatal(err)
	}
	second, ok := h.Get(key)
	if !ok || second == first {
		t.Fatal("the conversation is not running again as a new instance")
	}
	again, err := second.Submit(ctx, answer)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.Seq != first1.Seq {
		t.Fatalf("the answer sent again: %+v; want a duplicate of seq %d", again, first1.Seq)
	}
	await.Until(t, 10*time.Second, "the conversation finished", func() bool {
		var c tetherv1alpha1.Conversation
		return api.Get(ctx, client.ObjectKeyFromObject(conv), &c) == nil && c.Status.Phase == tetherv1alpha1.PhaseSucceeded
	})
	events, err := log.Read(ctx, eventlog.Key{Namespace: "ns", Name: "refund", UID: "conv-uid"}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	answers := 0
	for _, e := range events {
		if e.Type == protocol.EventAnswer {
			answers++
		}
	}
	if answers != 1 {
		t.Fatalf("%d answers in the log, want 1: %+v", answers, events)
	}
}
