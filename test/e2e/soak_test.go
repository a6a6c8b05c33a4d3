package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	tetherclient "tether.dev/tether/client"
	"tether.dev/tether/protocol"
)

// soakAgent is an echo Agent of three pods with a 4 s Lease.
const soakAgent = `apiVersion: tether.dev/v1alpha1
kind: Agent
metadata: {name: echoes, namespace: default}
spec:
  replicas: 3
  conversationsPerPod: 100
  leaseDurationSeconds: 4
  runtimePort: 8080
  template:
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: runtime
          image: tether-runtime:0.1.0
          imagePullPolicy: Never
          args: [--agent=echo]
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`

// chatter is one client that talks continuously: it sends a message,
// waits for its echo, and sends the next; it remembers every message that
// was acknowledged.
type chatter struct {
	name  string
	c     *tetherclient.Client
	mu    sync.Mutex
	acked map[string]string // client id -> text
	sent  int
}

// TestSoakUnderFaults: clients chat with an echo Agent of three pods while
// its runtimes are force-deleted and frozen past their Lease, one after
// another. Afterwards every conversation's log, read back from the start
// through the Ingress, has contiguous sequence numbers and a complete
// replay, holds every acknowledged message exactly once, and answers every
// message once, in order.
func TestSoakUnderFaults(t *testing.T) {
	c := need(t)
	soak := 150 * time.Second
	if testing.Short() {
		soak = 30 * time.Second
	}
	c.apply(t, soakAgent)
	eventually(t, 120*time.Second, "3 ready echo pods", func() bool {
		out, _ := c.run("kubectl", "get", "agent", "echoes", "-o", "jsonpath={.status.readyReplicas}")
		return out == "3"
	})
	const conversations = 6
	var chatters []*chatter
	for i := range conversations {
		name := fmt.Sprintf("soak-%d-%d", time.Now().Unix()%100000, i)
		c.apply(t, fmt.Sprintf("apiVersion: tether.dev/v1alpha1\nkind: Conversation\nmetadata: {name: %s, namespace: default}\nspec: {agentRef: {name: echoes}, subjects: [alice]}\n", name))
		eventually(t, 60*time.Second, name+" Running", func() bool {
			out, _ := c.run("kubectl", "get", "conversation", name, "-o", "jsonpath={.status.phase}")
			return out == "Running"
		})
		r := c.connect(t, name)
		chatters = append(chatters, &chatter{name: name, c: r.c, acked: map[string]string{}})
	}

	ctx, stop := context.WithTimeout(context.Background(), soak)
	defer stop()
	var wg sync.WaitGroup
	for _, ch := range chatters {
		wg.Add(1)
		go func() { defer wg.Done(); ch.chat(ctx) }()
	}
	faults := c.injectFaults(ctx, t, "echoes")
	wg.Wait()
	t.Logf("faults: %s", strings.Join(faults(), "; "))

	// Every conversation settles with a live owner, then is read back.
	for _, ch := range chatters {
		eventually(t, 60*time.Second, ch.name+" Running on a live pod", func() bool {
			out, _ := c.run("kubectl", "get", "conversation", ch.name, "-o", "jsonpath={.status.phase}/{.status.owner.name}")
			return strings.HasPrefix(out, "Running/") && !strings.HasSuffix(out, "/")
		})
		eventually(t, 60*time.Second, ch.name+" answered every acknowledged message", func() bool {
			return ch.check(t, c, false) == nil
		})
		if err := ch.check(t, c, true); err != nil {
			t.Error(err)
		}
	}
}

// chat talks until ctx ends: send, wait for the echo (or a while), again.
func (ch *chatter) chat(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		text := fmt.Sprintf("%s message %d", ch.name, i)
		id, err := ch.c.Send(text)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		ch.mu.Lock()
		ch.sent++
		ch.mu.Unlock()
		// The client's queue keeps it until it is acknowledged; wait for
		// that, then for a little more so turns interleave with faults.
		deadline := time.Now().Add(30 * time.Second)
		for ch.c.Pending() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		if ch.c.Pending() == 0 {
			ch.mu.Lock()
			ch.acked[id] = text
			ch.mu.Unlock()
		}
		time.Sleep(time.Duration(50+rand.IntN(150)) * time.Millisecond) //nolint:gosec // pacing, not a secret
	}
}

// check reads the conversation's whole log through the Ingress and checks
// it; final also asks that no message is unanswered.
func (ch *chatter) check(t *testing.T, c *cluster, final bool) error {
	t.Helper()
	events, complete, err := c.replay(t, ch.name)
	if err != nil {
		return err
	}
	if !complete {
		return fmt.Errorf("%s: the replay from 0 says the history is incomplete", ch.name)
	}
	var users, replies []string
	ids := map[string]int{}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			return fmt.Errorf("%s: event %d has seq %d: the log has a gap or is out of order", ch.name, i, e.Seq)
		}
		var d protocol.TextData
		_ = json.Unmarshal(e.Data, &d)
		switch e.Event {
		case protocol.EventUserMessage:
			users = append(users, d.Text)
			ids[e.ID]++
		case protocol.EventAssistantMessage:
			replies = append(replies, d.Text)
		}
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for id, text := range ch.acked {
		if ids[id] != 1 {
			return fmt.Errorf("%s: acknowledged message %s (%q) is in the log %d times", ch.name, id, text, ids[id])
		}
	}
	for id, n := range ids {
		if n != 1 {
			return fmt.Errorf("%s: message %s is in the log %d times", ch.name, id, n)
		}
	}
	if len(replies) > len(users) || !equalPrefix(users, replies) {
		return fmt.Errorf("%s: %d messages and %d replies, not answered once each in order", ch.name, len(users), len(replies))
	}
	if final && len(replies) != len(users) {
		return fmt.Errorf("%s: %d messages, %d answered", ch.name, len(users), len(replies))
	}
	if final {
		t.Logf("%s: %d events, %d messages sent, %d acknowledged, all answered once, in order", ch.name, len(events), ch.sent, len(ch.acked))
	}
	return nil
}

func equalPrefix(a, b []string) bool {
	for i := range b {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// replay reads a conversation's durable events from the start through the
// Ingress, up to replay_complete.
func (c *cluster) replay(t *testing.T, name string) ([]protocol.ServerFrame, bool, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 10 * time.Second}
	u := strings.Replace(*ingress, "http", "ws", 1) + protocol.ConversationPath("default", name) + "?after=0"
	ws, resp, err := d.Dial(u, http.Header{"Host": {*host}, "Authorization": {"Bearer " + c.token(t)}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, false, fmt.Errorf("%s: connecting to read the log: %w", name, err)
	}
	defer func() { _ = ws.Close() }()
	var events []protocol.ServerFrame
	for {
		_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		var f protocol.ServerFrame
		if err := ws.ReadJSON(&f); err != nil {
			return nil, false, fmt.Errorf("%s: reading the replay: %w", name, err)
		}
		switch f.Type {
		case protocol.TypeEvent:
			events = append(events, f)
		case protocol.TypeReplayComplete:
			return events, f.Complete != nil && *f.Complete && f.LastSeq == int64(len(events)), nil
		}
	}
}

// injectFaults hits the Agent's runtime pods until ctx ends, one fault
// every 10-20 s: force-deleting a pod, or freezing its runtime with SIGSTOP
// for 8 s (twice the Lease) and thawing it. It returns the log of faults.
func (c *cluster) injectFaults(ctx context.Context, t *testing.T, agent string) func() []string {
	t.Helper()
	var mu sync.Mutex
	var log []string
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(10+rand.IntN(10)) * time.Second): //nolint:gosec // fault timing
			}
			out, err := c.run("kubectl", "get", "pods", "-l", "tether.dev/agent="+agent,
				"--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}")
			pods := strings.Fields(out)
			if err != nil || len(pods) == 0 {
				continue
			}
			pod := pods[rand.IntN(len(pods))] //nolint:gosec // fault choice
			at := time.Since(start).Round(time.Second)
			if i%2 == 0 {
				_, _ = c.run("kubectl", "delete", "pod", pod, "--grace-period=0", "--force", "--wait=false")
				mu.Lock()
				log = append(log, fmt.Sprintf("%s force-deleted %s", at, pod))
				mu.Unlock()
				continue
			}
			pid, err := c.runtimePID(pod)
			if err != nil || syscall.Kill(pid, syscall.SIGSTOP) != nil {
				continue
			}
			mu.Lock()
			log = append(log, fmt.Sprintf("%s froze %s for 8s", at, pod))
			mu.Unlock()
			time.Sleep(8 * time.Second)
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	t.Cleanup(func() { <-done })
	return func() []string {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return log
	}
}
