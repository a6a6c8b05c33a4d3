package gateway_test

import (
	"context"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
)

// phaseLog polls a conversation and keeps each phase and epoch it passes
// through, until stop.
type phaseLog struct {
	mu      sync.Mutex
	changes []string
	epochs  []int64
	stop    chan struct{}
	done    chan struct{}
}

func watchPhases(t *testing.T, key client.ObjectKey) *phaseLog {
	p := &phaseLog{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		last, lastEpoch := "", int64(-1)
		for {
			conv := &tetherv1alpha1.Conversation{}
			if err := env.Client.Get(context.Background(), key, conv); err == nil {
				var epoch int64
				if conv.Status.Lease != nil {
					epoch = conv.Status.Lease.Epoch
				}
				p.mu.Lock()
				if phase := string(conv.Status.Phase); phase != last {
					p.changes, last = append(p.changes, phase), phase
				}
				if epoch != lastEpoch {
					p.epochs, lastEpoch = append(p.epochs, epoch), epoch
				}
				p.mu.Unlock()
			}
			select {
			case <-p.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(p.end)
	return p
}

func (p *phaseLog) end() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func (p *phaseLog) seen() ([]string, []int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.changes...), append([]int64(nil), p.epochs...)
}

// eventReasons counts the Events recorded on a conversation, by reason.
func eventReasons(t *testing.T, ns, name string) map[string]int {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			n := 1
			if e.Series != nil {
				n = int(e.Series.Count)
			} else if e.DeprecatedCount > 0 {
				n = int(e.DeprecatedCount)
			}
			out[e.Reason] += n
		}
	}
	return out
}

// TestBoundClientKeepsItAwake: a client opening a Suspended conversation
// wakes it once, and while the client is bound the conversation is not idle:
// it stays AwaitingInput for 60 s on one bind and one owner, however long
// the question was waiting before. Once the client leaves, it is suspended
// again after idleSuspendSeconds. Beside it, a client that answers 30 s
// after connecting gets one ack and the turn finishes.
func TestBoundClientKeepsItAwake(t *testing.T) {
	ns, port := namespace(t), testworker.FreePort(t)
	createIdlingAgent(t, ns, port)
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.28.1", Port: port})
	idle, answering := createConversation(t, ns, "bound-idle"), createConversation(t, ns, "bound-answer")
	isSuspended := func(c *tetherv1alpha1.Conversation) bool { return c.Status.Phase == tetherv1alpha1.PhaseSuspended }
	waitLong(t, idle, "Suspended", isSuspended)
	waitLong(t, answering, "Suspended", isSuspended)
	// The manager records its Events asynchronously: one counted before
	// it is written would be counted as happening while bound (a run of
	// 2026-12-08 read "before" without the Suspended event, then counted
	// that one suspension while the client was bound).
	await.Until(t, 10*time.Second, "the Suspended event recorded", func() bool { return eventReasons(t, ns, idle.Name)["Suspended"] >= 1 })
	before := eventReasons(t, ns, idle.Name)

	g := startGatewayAs(t, gatewayUser(t))
	phases := watchPhases(t, idle)
	connected := time.Now()
	ci, ri := connect(t, g.url(ns, idle.Name))
	ca, ra := connect(t, g.url(ns, answering.Name))
	ri.wait(t, "the prompt after waking", 1, isType(protocol.TypePendingPrompt))
	prompt := ra.wait(t, "the prompt after waking", 1, isType(protocol.TypePendingPrompt))

	awaitingInput := func() bool {
		var c tetherv1alpha1.Conversation
		return env.Client.Get(context.Background(), idle, &c) == nil && c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput
	}
	await.Until(t, 10*time.Second, "the woken conversation AwaitingInput", awaitingInput)
	await.Stays(t, time.Until(connected.Add(30*time.Second)), "the bound conversation AwaitingInput", awaitingInput)
	answerID, err := ca.Answer(prompt.Prompt.ID, "approve")
	if err != nil {
		t.Fatal(err)
	}
	ra.wait(t, "finished", 1, isFinished)
	wantEvents(t, ra)
	if acks := countFrames(ra, func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeAck && f.ID == answerID }); acks != 1 {
		t.Fatalf("the answer was acknowledged %d times, want once", acks)
	}

	await.Stays(t, time.Until(connected.Add(60*time.Second)), "the bound conversation AwaitingInput", awaitingInput)
	changes, epochs := phases.seen()
	after := eventReasons(t, ns, idle.Name)
	t.Logf("while bound for 60 s: phases %v, epochs %v, events %v (before %v)", changes, epochs, after, before)
	if got := changes[len(changes)-1]; got != string(tetherv1alpha1.PhaseAwaitingInput) {
		t.Fatalf("after 60 s bound the conversation is %s, want AwaitingInput", got)
	}
	// Suspended → Pending (woken) → AwaitingInput (claimed), nothing more.
	if len(changes) > 3 || len(epochs) != 2 || epochs[1] != epochs[0]+1 {
		t.Fatalf("phases %v and epochs %v while bound: want one wake and one placement", changes, epochs)
	}
	if woken := after["Woken"] - before["Woken"]; woken != 1 {
		t.Fatalf("%d wakes recorded, want 1", woken)
	}
	if suspended := after["Suspended"] - before["Suspended"]; suspended != 0 {
		t.Fatalf("suspended %d times while a client was bound", suspended)
	}
	binds := countFrames(ri, isType(protocol.TypeReplayComplete))
	prompts := countFrames(ri, isType(protocol.TypePendingPrompt))
	if binds != 1 || prompts != 1 || ci.Binds() != 1 {
		t.Fatalf("the client got %d replays and %d prompts on %d connections: want one bind sequence", binds, prompts, ci.Binds())
	}

	_ = ci.Close()
	left := time.Now()
	waitLong(t, idle, "Suspended again after the client left", isSuspended)
	if idleFor := time.Since(left); idleFor < 9*time.Second {
		t.Fatalf("suspended %s after the client left, before idleSuspendSeconds (10 s)", idleFor)
	}
}

func countFrames(r *recorder, want func(protocol.ServerFrame) bool) int { return r.Count(want) }
