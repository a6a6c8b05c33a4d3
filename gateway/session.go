package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/gateway/auth"
	"tether.dev/tether/protocol"
)

// maxServerFrameBytes bounds a frame from an owner: one event (64 KiB of
// data) and its envelope, JSON-escaped.
const maxServerFrameBytes = 512 << 10

// session is one client socket and, while the conversation has an owner,
// the socket to that owner. Two pumps serve it (goroutines only while
// frames come, none while the sockets are idle): readClient's forwards the
// client's frames; runUpstream finds the owner, starts the pump that
// forwards its frames, and finds the owner again when it is lost, so the
// client's socket stays open.
type session struct {
	srv     *Server
	key     types.NamespacedName
	subject string
	client  *websocket.Conn
	limiter *rate.Limiter
	release func()
	pinger  *time.Timer
	opened  time.Time

	// Lock order: upWrite first; then mu, or clientWrite, never both at
	// once (forward holds upWrite while it tells the client a frame was
	// refused; attach and detach hold upWrite while they take mu; pipe
	// takes clientWrite alone, and mu alone to forget an acked frame).

	// clientWrite serializes writes to the client.
	clientWrite    sync.Mutex
	clientDeadline writeDeadline

	// upWrite serializes writes to the owner, and is held while the owner
	// changes so frames keep their order.
	upWrite    sync.Mutex
	upDeadline writeDeadline
	// mu guards what follows.
	mu sync.Mutex
	up *websocket.Conn
	// expiry ends the session when its token expires.
	expiry *time.Timer
	// held are the client's frames while there is no owner; unacked are
	// those forwarded and not yet acknowledged, sent again to the next
	// owner (it applies a client id at most once).
	held, unacked []clientFrame

	// routed is the owner the current upstream was dialed for; when the
	// Conversation names another (a new epoch), the upstream is dropped
	// and the next owner found, even if the old one never closes.
	routed Decision

	// cursor is where the client is: the last event sequence number it
	// has, of which history; only runUpstream touches it.
	cursor protocol.Cursor

	// ctx ends when the session does: end cancels it.
	ctx     context.Context
	cancel  context.CancelFunc
	endOnce sync.Once
}

type clientFrame struct {
	kind int
	data []byte
	id   string
}

func newSession(srv *Server, key types.NamespacedName, subject string, client *websocket.Conn, cursor protocol.Cursor, routed Decision, release func()) *session {
	s := &session{
		srv: srv, key: key, subject: subject, client: client, release: release, cursor: cursor, routed: routed, opened: time.Now(),
		limiter: rate.NewLimiter(rate.Limit(srv.cfg.MessageRate), srv.cfg.MessageBurst),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	srv.sessions.add(s)
	srv.sessions.running.Add(2)
	srv.cfg.Metrics.Connections.Inc()
	s.pinger = time.AfterFunc(srv.cfg.PingPeriod, s.ping)
	return s
}

// expireAt ends the session with 4001 when its token expires: a socket
// does not outlive the credential it was opened with. The client gets a new
// token and reconnects, resuming where it was.
func (s *session) expireAt(t time.Time) {
	if t.IsZero() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiry = time.AfterFunc(time.Until(t), func() {
		s.srv.cfg.Metrics.AuthFailures.WithLabelValues(string(auth.ReasonExpired)).Inc()
		s.end(protocol.CloseUnauthorized, "the token expired: reconnect with a new one")
	})
}

// end closes the session once: the client gets code and reason, the owner
// a normal close.
func (s *session) end(code int, reason string) {
	s.endOnce.Do(func() {
		s.cancel()
		s.pinger.Stop()
		// WriteControl needs no lock: it may run beside another writer.
		_ = s.client.WriteControl(websocket.CloseMessage, protocol.CloseMessage(code, reason), time.Now().Add(s.srv.cfg.WriteWait))
		// The client's pump completes the close handshake: it reads until
		// the client's close frame, or until this closes the socket.
		time.AfterFunc(closeHandshakeWait, func() { _ = s.client.Close() })
		s.mu.Lock()
		up := s.up
		s.up = nil
		if s.expiry != nil {
			s.expiry.Stop()
		}
		s.mu.Unlock()
		if up != nil {
			closeConn(up, protocol.CloseNormal, "the client left", s.srv.cfg.WriteWait)
		}
		s.srv.sessions.remove(s)
		s.release()
		s.srv.cfg.Metrics.Connections.Dec()
	})
}

func (s *session) ended() bool { return s.ctx.Err() != nil }

// closeHandshakeWait is how long an ended session waits for the client's
// close frame before it closes the socket.
const closeHandshakeWait = 2 * time.Second

// ping pings both sockets, from a timer rather than a goroutine per socket:
// an idle session costs no stack for it. WriteControl may be called
// concurrently with the other writers. A socket from which nothing (not
// even a pong) has come for the pong wait is dead: the client's ends the
// session, the owner's is dropped and the owner found again. So a silent
// peer is found between one and one and a half pong waits (with the
// default periods) after its last frame.
func (s *session) ping() {
	if s.ended() {
		return
	}
	now := time.Now()
	cfg := &s.srv.cfg
	if silentFor(s.client, now) > cfg.PongWait {
		s.end(protocol.CloseNormal, "")
		_ = s.client.Close()
		return
	}
	deadline := now.Add(cfg.WriteWait)
	_ = s.client.WriteControl(websocket.PingMessage, nil, deadline)
	s.mu.Lock()
	up := s.up
	s.mu.Unlock()
	if up != nil {
		if silentFor(up, now) > cfg.PongWait {
			_ = up.Close() // its pump sees the loss
		} else {
			_ = up.WriteControl(websocket.PingMessage, nil, deadline)
		}
	}
	s.pinger.Reset(cfg.PingPeriod)
}

// silentFor is how long ago ws last brought bytes (0 if it cannot say).
func silentFor(ws *websocket.Conn, now time.Time) time.Duration {
	if fc, ok := ws.NetConn().(*frameConn); ok {
		return fc.silentFor(now)
	}
	return 0
}

// answerPings makes ws's pings answered with pongs (frameConn takes them
// before gorilla sees them).
func answerPings(ws *websocket.Conn, wait time.Duration) {
	if fc, ok := ws.NetConn().(*frameConn); ok {
		fc.onPing = func(payload []byte) { _ = ws.WriteControl(websocket.PongMessage, payload, time.Now().Add(wait)) }
	}
}

// readClient starts the pump that forwards the client's frames until its
// socket closes.
func (s *session) readClient() {
	cfg := &s.srv.cfg
	s.client.SetReadLimit(protocol.MaxClientFrameBytes)
	answerPings(s.client, cfg.WriteWait)
	startPump(s.client, s.clientFrame, func(err error) {
		if errors.Is(err, websocket.ErrReadLimit) {
			// The library already closed the socket with 1009.
			cfg.Metrics.Refused.WithLabelValues(refusedTooLarge).Inc()
		}
		s.end(protocol.CloseNormal, "")
		_ = s.client.Close()
		s.srv.sessions.running.Done()
	})
}

// clientFrame forwards one of the client's frames.
func (s *session) clientFrame(kind int, data []byte) bool {
	cfg := &s.srv.cfg
	if s.ended() {
		return true // reading until the client's close frame
	}
	if !s.limiter.Allow() {
		cfg.Metrics.Refused.WithLabelValues(refusedFlood).Inc()
		s.end(protocol.CloseRateLimited, fmt.Sprintf("message flood: at most %g frames a second", cfg.MessageRate))
		return true
	}
	cfg.Metrics.framesIn.Inc()
	s.forward(clientFrame{kind: kind, data: data, id: clientID(kind, data)})
	return true
}

// clientID is the id of a message or an answer, whose ack the gateway
// waits for (and keeps the frame meanwhile, to send again to a new owner).
// Only a frame that passes the protocol's full decoder is tracked: one the
// owner will refuse is forwarded untracked, so it cannot pin memory or be
// sent to every later owner.
func clientID(kind int, data []byte) string {
	if kind != websocket.TextMessage {
		return ""
	}
	f, err := protocol.DecodeClientFrame(data)
	if err != nil || (f.Type != protocol.TypeMessage && f.Type != protocol.TypeAnswer) {
		return ""
	}
	return f.ID
}

// forward sends a client frame to the owner, or holds it while there is
// none.
func (s *session) forward(f clientFrame) {
	s.upWrite.Lock()
	defer s.upWrite.Unlock()
	s.mu.Lock()
	up := s.up
	switch {
	case up == nil && len(s.held) >= s.srv.cfg.HoldFrames:
		s.mu.Unlock()
		s.sendClient(protocol.ErrorFrame(protocol.CodeHoldFull, f.id,
			fmt.Sprintf("the conversation has no owner yet and %d frames are held: send this again after the next status frame", s.srv.cfg.HoldFrames)))
		return
	case up == nil:
		s.held = append(s.held, f)
		s.mu.Unlock()
		return
	case f.id != "" && len(s.unacked) >= s.srv.cfg.MaxUnacked:
		s.mu.Unlock()
		s.sendClient(protocol.ErrorFrame(protocol.CodeRateLimited, f.id,
			fmt.Sprintf("%d frames await their acknowledgement: send this again after the next ack", s.srv.cfg.MaxUnacked)))
		return
	case f.id != "":
		s.unacked = append(s.unacked, f)
	}
	s.mu.Unlock()
	// A failed write is the owner's loss: runUpstream sees it too, and
	// sends the unacknowledged frames to the next owner.
	_ = s.writeUp(up, f)
}

// writeUp writes to the owner; the caller holds upWrite.
func (s *session) writeUp(up *websocket.Conn, f clientFrame) error {
	s.upDeadline.extend(up, s.srv.cfg.WriteWait)
	return up.WriteMessage(f.kind, f.data)
}

// acked forgets a forwarded frame the owner acknowledged or refused.
func (s *session) acked(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.unacked {
		if f.id == id {
			s.unacked = append(s.unacked[:i], s.unacked[i+1:]...)
			if len(s.unacked) == 0 {
				s.unacked = nil // an idle session holds no array
			}
			return
		}
	}
}

// sendClient writes a frame of the gateway's own to the client.
func (s *session) sendClient(f protocol.ServerFrame) {
	data, err := marshalFrame(f)
	if err == nil {
		_ = s.writeClient(websocket.TextMessage, data)
	}
}

func (s *session) writeClient(kind int, data []byte) error {
	return s.writeClientMore(kind, data, false)
}

// writeClientMore writes a frame to the client; more: another follows at
// once (the owner's connection holds it whole), so the frame may wait in
// the client connection's cork for it (cork.go). A write with more false
// sends everything gathered.
func (s *session) writeClientMore(kind int, data []byte, more bool) error {
	s.clientWrite.Lock()
	defer s.clientWrite.Unlock()
	s.clientDeadline.extend(s.client, s.srv.cfg.WriteWait)
	fc, _ := s.client.NetConn().(*frameConn)
	if fc == nil {
		return s.client.WriteMessage(kind, data)
	}
	if more {
		fc.cork()
	}
	err := s.client.WriteMessage(kind, data)
	if !more {
		if uerr := fc.uncork(); err == nil {
			err = uerr
		}
	}
	return err
}

// flushClient sends what the client's cork holds, if anything.
func (s *session) flushClient() error {
	s.clientWrite.Lock()
	defer s.clientWrite.Unlock()
	if fc, ok := s.client.NetConn().(*frameConn); ok {
		return fc.uncork()
	}
	return nil
}

// runUpstream connects to the owner (holding while there is none) and
// starts the pump that pipes its frames to the client; when the owner is
// lost or replaced, the pump's end runs it again to find the next one,
// resuming after the last event the client has.
func (s *session) runUpstream(up *websocket.Conn) {
	if up == nil {
		var routed Decision
		var err error
		up, routed, err = s.hold()
		if err != nil {
			var ce *closeError
			if errors.As(err, &ce) {
				s.end(ce.code, ce.reason)
			}
			s.srv.sessions.running.Done()
			return
		}
		s.mu.Lock()
		s.routed = routed
		s.mu.Unlock()
	}
	if !s.attach(up) {
		s.srv.sessions.running.Done()
		return
	}
	stopFollowing := s.srv.cfg.Conversations.OnChange(s.key, s.followOwner)
	s.followOwner() // a change between the dial and now
	s.pipe(up, func(code int, reason string, clientGone bool) {
		stopFollowing()
		s.detach(up)
		if clientGone || s.ended() {
			s.srv.sessions.running.Done()
			return
		}
		if endsSession(code) {
			s.end(code, reason)
			s.srv.sessions.running.Done()
			return
		}
		s.srv.cfg.Metrics.UpstreamReconnect.Inc()
		s.srv.cfg.Log.V(1).Info("lost the owner's socket; finding the owner again", "conversation", s.key, "code", code)
		s.runUpstream(nil)
	})
}

// followOwner drops the upstream when the Conversation no longer names the
// owner it was dialed for: the controller moved it (a new epoch), or the
// client may no longer use it. The owner may be frozen or cut off and never
// close its socket; the client must not wait for that. runUpstream then
// holds, tells the client, and connects to the new owner. It runs on the
// Directory's notification goroutine, so it only reads the cache and closes
// a socket.
func (s *session) followOwner() {
	d, err := s.srv.decide(context.Background(), s.key, s.subject)
	if err != nil {
		return
	}
	s.mu.Lock()
	up, routed := s.up, s.routed
	s.mu.Unlock()
	if up == nil || (d.Action == Route && d.Upstream == routed.Upstream && d.Epoch == routed.Epoch) {
		return
	}
	s.srv.cfg.Metrics.OwnerChanged.Inc()
	_ = up.Close() // pipe's read fails at once
}

// slowHold is how long a hold lasts before it is logged, and maxLoggedDials
// how many of its failed dials the log keeps.
const (
	slowHold       = 2 * time.Second
	maxLoggedDials = 8
)

// ownerChanged reports whether d routes to another owner or epoch than left, the
// owner a session was bound to: the controller moved the conversation.
func ownerChanged(left, d Decision) bool {
	return left.Upstream != "" && d.Action == Route && (d.Epoch != left.Epoch || d.Upstream != left.Upstream)
}

// endsSession reports whether an owner's close code is the client's own
// business (passed on) rather than the owner going away (held through).
func endsSession(code int) bool {
	switch code {
	case protocol.CloseBadRequest, protocol.CloseSlowConsumer, protocol.CloseRateLimited, protocol.CloseFinished,
		protocol.CloseMessageTooBig, protocol.CloseForbidden, protocol.CloseNotFound:
		return true
	}
	return false
}

// attach makes up the owner's socket and sends it what the client sent
// that no owner has acknowledged, in order.
func (s *session) attach(up *websocket.Conn) bool {
	s.upWrite.Lock()
	defer s.upWrite.Unlock()
	s.mu.Lock()
	if s.ended() {
		s.mu.Unlock()
		closeConn(up, protocol.CloseNormal, "the client left", s.srv.cfg.WriteWait)
		return false
	}
	s.up = up
	s.upDeadline = writeDeadline{}
	resend := make([]clientFrame, 0, len(s.unacked)+len(s.held))
	resend = append(append(resend, s.unacked...), s.held...)
	for _, f := range s.held {
		if f.id != "" {
			s.unacked = append(s.unacked, f)
		}
	}
	s.held = nil
	s.mu.Unlock()
	for _, f := range resend {
		if s.writeUp(up, f) != nil {
			break // pipe sees the loss
		}
	}
	return true
}

func (s *session) detach(up *websocket.Conn) {
	s.upWrite.Lock()
	s.mu.Lock()
	if s.up == up {
		s.up = nil
	}
	s.mu.Unlock()
	s.upWrite.Unlock()
	_ = up.Close()
}

// pipe starts the pump that forwards the owner's frames to the client
// until either socket fails, then calls ended with the owner's close code
// and reason, or clientGone. Events the client already has are not sent
// again.
func (s *session) pipe(up *websocket.Conn, ended func(code int, reason string, clientGone bool)) {
	up.SetReadLimit(maxServerFrameBytes)
	answerPings(up, s.srv.cfg.WriteWait)
	upFC, _ := up.NetConn().(*frameConn)
	handle := func(kind int, data []byte) bool {
		return s.ownerFrame(kind, data, upFC != nil && upFC.wholeMessageBuffered())
	}
	startPump(up, handle, func(err error) {
		// A read that failed after a frame left in the cork: send it.
		_ = s.flushClient()
		var ce *websocket.CloseError
		switch {
		case err == nil:
			ended(0, "", true)
		case errors.As(err, &ce):
			ended(ce.Code, ce.Text, false)
		default:
			ended(websocket.CloseAbnormalClosure, "", false)
		}
	})
}

// ownerFrame forwards one of the owner's frames to the client; false: the
// client is gone. more: the owner's next message is already here, whole.
func (s *session) ownerFrame(kind int, data []byte, more bool) bool {
	cfg := &s.srv.cfg
	if kind == websocket.TextMessage {
		if h, ok := protocol.PeekHead(data); ok {
			switch h.Type {
			case protocol.TypeEvent:
				if h.Seq <= s.cursor.After {
					if !more {
						return s.flushClient() == nil
					}
					return true
				}
				s.cursor.After = h.Seq
			case protocol.TypeAck, protocol.TypeError:
				if h.ID != "" {
					s.acked(h.ID)
				}
			case protocol.TypeReset:
				// The owner did not honour the cursor: what follows is
				// the history from its start, all of it for the client.
				s.cursor = protocol.Cursor{Log: logOf(data)}
			case protocol.TypeReplayComplete:
				s.cursor.Log = logOf(data)
			}
		}
	}
	if err := s.writeClientMore(kind, data, more); err != nil {
		if !s.ended() {
			cfg.Metrics.Refused.WithLabelValues(refusedSlowConsumer).Inc()
			s.end(protocol.CloseSlowConsumer, "too slow: reconnect and resume")
		}
		return false
	}
	cfg.Metrics.framesOut.Inc()
	return true
}

// logOf reads the log identity of a reset or replay_complete frame.
func logOf(data []byte) string {
	var f struct {
		Log string `json:"log"`
	}
	_ = json.Unmarshal(data, &f)
	return f.Log
}

// writeDeadline bounds writes to a socket without resetting the deadline
// timer on every frame: it is moved at most once a second, so a write
// always has at least the write wait less a second.
type writeDeadline struct{ set time.Time }

func (d *writeDeadline) extend(ws *websocket.Conn, wait time.Duration) {
	now := time.Now()
	if now.Sub(d.set) < time.Second {
		return
	}
	d.set = now
	_ = ws.SetWriteDeadline(now.Add(wait))
}

// closeError ends a session with a close code.
type closeError struct {
	code   int
	reason string
}

func (e *closeError) Error() string { return fmt.Sprintf("close %d: %s", e.code, e.reason) }

var errEnded = errors.New("the session ended")

// hold keeps the client's socket open while the conversation has no
// reachable owner: it tells the client the phase, wakes a Suspended
// conversation, and connects as soon as the conversation's status names an
// owner that answers.
func (s *session) hold() (*websocket.Conn, Decision, error) {
	cfg := &s.srv.cfg
	start := time.Now()
	cfg.Metrics.Holds.Inc()
	defer func() {
		cfg.Metrics.Holds.Dec()
		cfg.Metrics.HoldSeconds.Observe(time.Since(start).Seconds())
	}()
	changed, stop := s.srv.changes(s.key)
	defer stop()
	timeout := time.NewTimer(cfg.HoldTimeout)
	defer timeout.Stop()
	ctx := s.ctx

	s.mu.Lock()
	left := s.routed // the owner this session lost, if it had one
	s.mu.Unlock()
	// A hold that lasts is logged with what it went through: which phases
	// the client was told, and the dials to owners that failed.
	var phases []string
	var dials []string
	defer func() {
		if held := time.Since(start); held >= slowHold {
			cfg.Log.Info("a client was held", "conversation", s.key, "held", held.Round(time.Millisecond),
				"left", left.Upstream, "leftEpoch", left.Epoch, "told", phases, "failedDials", dials)
		}
	}()
	var told string
	toldMove := false
	woken := false
	backoff := 50 * time.Millisecond
	var retry <-chan time.Time
	for {
		d, err := s.srv.decide(ctx, s.key, s.subject)
		if err != nil {
			// The cache cannot say (a nil conversation would read as
			// "deleted"): keep holding and look again on the next change.
			d = Decision{Action: Hold, Phase: "Unknown"}
		}
		message := "waiting for the conversation's owner"
		switch d.Action {
		case Refuse:
			return nil, Decision{}, &closeError{d.CloseCode, d.Reason}
		case Wake:
			message = "the conversation is suspended; waking it"
		case Route:
			message = "connecting to the conversation's owner"
		}
		// The client hears of every hold, and of each change of phase. A
		// move is told as one even when the cache shows it only once the
		// new owner has claimed it (the Rescheduling write and the claim
		// arrived together).
		if ownerChanged(left, d) && !toldMove {
			told = string(tetherv1alpha1.PhaseRescheduling)
			s.sendClient(protocol.StatusFrame(told, "the conversation moved to another owner; connecting to it"))
			phases = append(phases, fmt.Sprintf("%s (moved) at %s", told, time.Since(start).Round(time.Millisecond)))
		}
		if phase := string(d.Phase); phase != told {
			told = phase
			s.sendClient(protocol.StatusFrame(phase, message))
			phases = append(phases, fmt.Sprintf("%s at %s", phase, time.Since(start).Round(time.Millisecond)))
		}
		toldMove = toldMove || told == string(tetherv1alpha1.PhaseRescheduling)
		switch {
		case d.Action == Wake && !woken:
			if err := cfg.Conversations.Wake(ctx, s.key); err != nil {
				cfg.Log.Error(err, "waking a conversation", "conversation", s.key)
				retry = time.After(backoff)
			} else {
				woken = true
			}
		case d.Action == Route && retry == nil:
			up, status, moved, err := s.srv.dialUnlessMoved(ctx, s.key, s.subject, s.cursor, d, changed)
			if err == nil {
				return up, d, nil
			}
			if len(dials) < maxLoggedDials {
				dials = append(dials, fmt.Sprintf("%s epoch %d at %s: %d, %v", d.Upstream, d.Epoch, time.Since(start).Round(time.Millisecond), status, err))
			}
			switch {
			case moved:
				continue // the owner changed while dialing the old one: route again at once
			case status == http.StatusUnauthorized:
				return nil, Decision{}, &closeError{protocol.CloseInternal, "the gateway cannot reach conversations now"}
			case status == http.StatusTooManyRequests:
				return nil, Decision{}, &closeError{protocol.CloseRateLimited, tooManyOnConversation}
			}
			retry = time.After(backoff)
			backoff = min(2*backoff, 2*time.Second)
		}
		select {
		case <-changed:
			retry = nil // the status changed: try at once
		case <-retry:
			retry = nil
		case <-timeout.C:
			cfg.Metrics.Refused.WithLabelValues(refusedHoldTimeout).Inc()
			return nil, Decision{}, &closeError{protocol.CloseHoldTimeout, fmt.Sprintf("no owner within %s: reconnect to try again", cfg.HoldTimeout)}
		case <-ctx.Done():
			return nil, Decision{}, errEnded
		}
	}
}
