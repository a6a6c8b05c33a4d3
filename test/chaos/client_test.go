package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	tetherclient "tether.dev/tether/client"
	"tether.dev/tether/protocol"
)

// seen is an event as a client saw it.
type seen struct {
	event, id string
	data      json.RawMessage
}

// transcript is what one conversation's client did and saw, across the
// clients it used (a client that drops and reconnects on its own is a new
// one, resuming from the last event it saw).
type transcript struct {
	name, subject, token string
	kind                 agentKind

	mu         sync.Mutex
	events     map[int64]seen
	last       int64 // the last event seen, in order
	reset      bool  // told the history is incomplete since the last event
	resets     int
	violations []string
	sent       map[string]string // client message id -> text
	acked      map[string]bool   // ids acknowledged
	answers    map[string]int64  // answer id -> the prompt seq it answered
	promptSeq  int64             // the prompt the client holds (0: none)
	promptID   string
	prompts    []promptSeen // pending_prompt frames
	refreshes  []time.Time  // when the suite dropped the client's socket on purpose
	timeline   []mark       // frames other than events and acks, to explain a slow sample
	finished   bool
	repeats    int
	binds      int
	stuck      string // what kept the client from finishing, if anything
}

// promptSeen is a pending_prompt frame: when, and the prompt's sequence
// number.
type promptSeen struct {
	at  time.Time
	seq int64
}

// mark is a frame the client got that says where its socket stands.
type mark struct {
	at   time.Time
	what string
}

func newTranscript(name, subject, token string, k agentKind) *transcript {
	return &transcript{name: name, subject: subject, token: token, kind: k, events: map[int64]seen{}, sent: map[string]string{}, acked: map[string]bool{}, answers: map[string]int64{}}
}

func (tr *transcript) fail(format string, args ...any) {
	tr.violations = append(tr.violations, fmt.Sprintf(format, args...))
}

// observe records a frame the client delivered.
func (tr *transcript) observe(f protocol.ServerFrame, at time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch f.Type {
	case protocol.TypeEvent:
		if f.Seq != tr.last+1 && !tr.reset {
			tr.fail("event %d (%s) after event %d: a gap the client was not told of", f.Seq, f.Event, tr.last)
		}
		if prev, ok := tr.events[f.Seq]; ok && (prev.event != f.Event || prev.id != f.ID) {
			tr.fail("event %d was %s %s, then %s %s", f.Seq, prev.event, prev.id, f.Event, f.ID)
		}
		tr.events[f.Seq] = seen{event: f.Event, id: f.ID, data: f.Data}
		tr.last, tr.reset = f.Seq, false
		switch f.Event {
		case protocol.EventPrompt:
			var p protocol.Prompt
			if json.Unmarshal(f.Data, &p) == nil {
				tr.promptSeq, tr.promptID = f.Seq, p.ID
			}
		case protocol.EventAnswer:
			tr.promptSeq, tr.promptID = 0, ""
		case protocol.EventFinished, protocol.EventFailed:
			tr.promptSeq, tr.promptID = 0, ""
			tr.finished = true
		}
	case protocol.TypeStatus:
		tr.mark(at, "status "+f.Phase)
	case protocol.TypeReset:
		tr.mark(at, "reset")
		tr.resets++
		tr.reset, tr.last = true, 0
	case protocol.TypeReplayComplete:
		tr.mark(at, "replay_complete")
		if f.Complete != nil && !*f.Complete {
			tr.reset = true // told: the history before it is gone
		}
	case protocol.TypeAck:
		tr.acked[f.ID] = true
	case protocol.TypePendingPrompt:
		tr.prompts = append(tr.prompts, promptSeen{at, f.Seq})
		tr.mark(at, "pending_prompt")
		if f.Prompt != nil {
			tr.promptSeq, tr.promptID = f.Seq, f.Prompt.ID
		}
	}
}

// mark adds to the timeline (its last 1,024 marks); the caller holds tr.mu.
func (tr *transcript) mark(at time.Time, what string) {
	if len(tr.timeline) == 1024 {
		tr.timeline = slices.Delete(tr.timeline, 0, 1)
	}
	tr.timeline = append(tr.timeline, mark{at, what})
}

// marksBetween is the timeline from one time to another.
func (tr *transcript) marksBetween(from, to time.Time) []mark {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []mark
	for _, m := range tr.timeline {
		if !m.at.Before(from) && !m.at.After(to) {
			out = append(out, m)
		}
	}
	return out
}

// holdsPrompt reports whether the client holds a prompt.
func (tr *transcript) holdsPrompt() bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.promptSeq != 0
}

// heldPrompt is the prompt (its sequence number) a client held.
func (tr *transcript) heldPrompt() int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.promptSeq
}

// promptAgain is when the client was next sent prompt seq again after t (a
// pending_prompt frame, which comes on every new bind), unless the suite
// itself dropped the client's socket in between: then the prompt came
// again for that, not for what happened at t.
func (tr *transcript) promptAgain(t time.Time, seq int64) (time.Time, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, p := range tr.prompts {
		if !p.at.After(t) {
			continue
		}
		for _, r := range tr.refreshes {
			if r.After(t) && !r.After(p.at) {
				return time.Time{}, false
			}
		}
		if p.seq != seq {
			return time.Time{}, false // another prompt by then: this one was answered
		}
		return p.at, true
	}
	return time.Time{}, false
}

// talker is one independent client: it talks to its conversation through
// the Ingress, and now and then drops its socket and connects anew.
type talker struct {
	w     *world
	tr    *transcript
	c     *tetherclient.Client
	conns *connSet
	read  chan struct{} // closed when the client's frames are all read
}

// connect starts a client resuming after the transcript's last event.
func (w *world) connect(tr *transcript, conns *connSet, after int64, log string) *talker {
	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDialContext: conns.dial}
	c := tetherclient.Connect(context.Background(), tetherclient.Config{
		URL:   *ingress + protocol.ConversationPath(ns, tr.name),
		Token: tetherclient.StaticToken(tr.token), Header: http.Header{"Host": {*host}},
		After: after, Log: log, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Dialer: dialer,
	})
	tk := &talker{w: w, tr: tr, c: c, conns: conns, read: make(chan struct{})}
	go func() {
		defer close(tk.read)
		for f := range c.Frames() {
			tr.observe(f, time.Now())
		}
	}()
	return tk
}

// close ends the client and keeps its counts in the transcript.
func (tk *talker) close() {
	_ = tk.c.Close()
	<-tk.read
	tk.tr.mu.Lock()
	tk.tr.repeats += tk.c.Repeats()
	tk.tr.binds += tk.c.Binds()
	tk.tr.mu.Unlock()
}

// reconnect drops the socket and connects a new client after the last
// event seen, as a page refreshed would. The cursor is read once the old
// client is closed and its frames are all read: one read before could miss
// a frame that arrived in between, and the new client would deliver it
// again.
func (tk *talker) reconnect() *talker {
	tk.tr.mu.Lock()
	tk.tr.refreshes = append(tk.tr.refreshes, time.Now())
	tk.tr.mu.Unlock()
	tk.close()
	return tk.w.connect(tk.tr, tk.conns, tk.c.LastSeq(), tk.c.Log())
}

// send sends a message and remembers it.
func (tk *talker) send(text string) error {
	id, err := tk.c.Send(text)
	if err != nil {
		return err
	}
	tk.tr.mu.Lock()
	tk.tr.sent[id] = text
	tk.tr.mu.Unlock()
	return nil
}

// waitAcked waits until nothing the client sent is unacknowledged.
func (tk *talker) waitAcked(ctx context.Context, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for tk.c.Pending() > 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// chatEcho talks to an echo conversation until ctx ends: a message, its
// acknowledgement, a pause, again; now and then it reconnects on its own.
func (w *world) chatEcho(ctx context.Context, tr *transcript, conns *connSet) {
	tk := w.connect(tr, conns, 0, "")
	for i := 0; ctx.Err() == nil; i++ {
		if err := tk.send(fmt.Sprintf("%s message %d", tr.name, i)); err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		tk.waitAcked(ctx, 30*time.Second)
		if w.chance(0.03) && tk.c.Pending() == 0 {
			tk = tk.reconnect()
		}
		time.Sleep(w.between(50*time.Millisecond, 250*time.Millisecond))
	}
	// What was sent is acknowledged before the audit, faults being over.
	if !tk.waitAcked(context.Background(), 60*time.Second) {
		tr.mu.Lock()
		tr.stuck = fmt.Sprintf("%d unacknowledged 60s after the faults: %d binds, last event %d, client error %v",
			tk.c.Pending(), tk.c.Binds(), tk.c.LastSeq(), tk.c.Err())
		tr.mu.Unlock()
	}
	tk.close()
}

// runApprovals runs approval conversations one after another until ctx
// ends: each is created, its prompt awaited (held across moves), answered
// after a pause, and followed to its end.
func (w *world) runApprovals(ctx context.Context, k agentKind, subject, token string, conns *connSet, add func(*transcript)) {
	for i := 0; ctx.Err() == nil; i++ {
		tr := newTranscript(fmt.Sprintf("%s-%d", subject, i), subject, token, k)
		if err := w.conversation(ctx, k, tr.name, subject, "refund order "+tr.name); err != nil {
			return
		}
		add(tr)
		tk := w.connect(tr, conns, 0, "")
		if !waitFor(ctx, 90*time.Second, tr.holdsPrompt) {
			tk.close()
			continue
		}
		time.Sleep(w.between(time.Second, 10*time.Second)) // a human reading
		tr.mu.Lock()
		promptID, promptSeq := tr.promptID, tr.promptSeq
		tr.mu.Unlock()
		if promptID != "" {
			id, err := tk.c.Answer(promptID, "approve")
			if err == nil {
				tr.mu.Lock()
				tr.answers[id] = promptSeq
				tr.sent[id] = "approve"
				tr.mu.Unlock()
			}
		}
		waitFor(ctx, 90*time.Second, func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			return tr.finished
		})
		if w.chance(0.2) {
			tk = tk.reconnect() // and read the end again
		}
		tk.waitAcked(ctx, 10*time.Second)
		tk.close()
	}
}

// waitFor polls cond every 20 ms until it holds, ctx ends or timeout.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	return waitEvery(ctx, timeout, 20*time.Millisecond, cond)
}

// waitEvery polls cond every interval until it holds, ctx ends or timeout.
func waitEvery(ctx context.Context, timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}

// connSet is a client's TCP connections, so a fault can cut one.
type connSet struct {
	mu   sync.Mutex
	last *cuttable
}

func (s *connSet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cc := &cuttable{Conn: c}
	s.mu.Lock()
	s.last = cc
	s.mu.Unlock()
	return cc, nil
}

// cut cuts the newest connection in the middle of the next frame the
// client writes (or after a second if it writes none).
func (s *connSet) cut() bool {
	s.mu.Lock()
	c := s.last
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.mu.Lock()
	c.cutNext = true
	c.mu.Unlock()
	time.AfterFunc(time.Second, func() { _ = c.Close() })
	return true
}

// cuttable is a TCP connection whose next write can be its last, half
// written.
type cuttable struct {
	net.Conn
	mu      sync.Mutex
	cutNext bool
}

func (c *cuttable) Write(p []byte) (int, error) {
	c.mu.Lock()
	cut := c.cutNext
	c.mu.Unlock()
	if !cut || len(p) < 2 {
		return c.Conn.Write(p)
	}
	n, _ := c.Conn.Write(p[:len(p)/2])
	_ = c.Close()
	return n, net.ErrClosed
}
