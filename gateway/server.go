package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/gateway/auth"
	"tether.dev/tether/internal/tlsfiles"
	"tether.dev/tether/protocol"
)

// Conversations is what the gateway needs to know of conversations; a
// *Directory in production.
type Conversations interface {
	// Get returns the conversation, or nil if there is none.
	Get(ctx context.Context, key types.NamespacedName) (*tetherv1alpha1.Conversation, error)
	// Pod returns a worker pod as the gateway's own informer holds it, or
	// nil if it holds none.
	Pod(ctx context.Context, key types.NamespacedName) (*corev1.Pod, error)
	// OnChange calls fn whenever the conversation or the pod its status
	// names as owner changes, until the
	// returned function is called. fn runs on the notifier's goroutine and
	// must not block.
	OnChange(key types.NamespacedName, fn func()) (stop func())
	// Wake asks for a Suspended conversation to be placed.
	Wake(ctx context.Context, key types.NamespacedName) error
}

// Config configures a Server. Zero values take the defaults in brackets.
type Config struct {
	Auth          *auth.Authenticator
	Conversations Conversations
	// UpstreamToken authenticates the gateway to the runtimes' internal
	// endpoint.
	UpstreamToken TokenSource
	// RuntimeCA, when set, is the CA bundle that signs the runtimes'
	// serving certificates: the gateway then dials them over TLS (wss),
	// checking the name of the conversation's namespace
	// (protocol.RuntimeServerName). Nil dials plain ws.
	RuntimeCA *tlsfiles.CAPool
	// HoldTimeout bounds how long a socket is held without an owner [60s];
	// then it is closed with 4012 and the client retries.
	HoldTimeout time.Duration
	// HoldFrames bounds the client frames held while there is no owner
	// [16]; more are refused with a hold_full error frame.
	HoldFrames int
	// MaxUnacked bounds the client frames forwarded and not yet
	// acknowledged, kept to re-send after the owner changes [64].
	MaxUnacked int
	// MaxConnsPerSubject bounds one subject's open sockets [32].
	MaxConnsPerSubject int
	// ConnectRate and ConnectBurst bound how fast one subject opens sockets
	// [5 a second, burst 40]: every connect to a suspended conversation may
	// cost the API server a write, and every connect a token check.
	ConnectRate  float64
	ConnectBurst int
	// MaxUnauthenticated bounds the connections accepted whose WebSocket
	// handshake (and so authentication) is not done [1024]; more are closed
	// at once. It holds when the http.Server's ConnState is TrackConn.
	MaxUnauthenticated int
	// MessageRate and MessageBurst bound the frames a socket may send per
	// second [10, burst 20]; a flood is closed with 4009.
	MessageRate  float64
	MessageBurst int
	// DialTimeout bounds connecting to an owner [5s].
	DialTimeout time.Duration
	// PingPeriod is how often both sockets are pinged [25s], below the 60 s
	// idle timeout common in ingress proxies; PongWait is how long a silent
	// peer is kept [60s]; WriteWait bounds one write [10s].
	PingPeriod, PongWait, WriteWait time.Duration
	// ReadBufferSize is each socket's read buffer [512]: it is held for
	// the socket's life, so it is small; larger frames are read through it.
	ReadBufferSize int
	Metrics        *Metrics
	Log            logr.Logger
}

func (c *Config) defaults() error {
	if c.Auth == nil || c.Conversations == nil {
		return errors.New("gateway: Auth and Conversations are required")
	}
	if c.UpstreamToken == nil {
		return errors.New("gateway: an upstream token is required: the runtimes refuse the gateway without one")
	}
	setDefault(&c.HoldTimeout, 60*time.Second)
	setDefault(&c.HoldFrames, 16)
	setDefault(&c.MaxUnacked, 64)
	setDefault(&c.MaxConnsPerSubject, 32)
	setDefault(&c.ConnectRate, 5)
	setDefault(&c.ConnectBurst, 40)
	setDefault(&c.MaxUnauthenticated, 1024)
	setDefault(&c.MessageRate, 10)
	setDefault(&c.MessageBurst, 20)
	setDefault(&c.DialTimeout, 5*time.Second)
	setDefault(&c.PingPeriod, 25*time.Second)
	setDefault(&c.PongWait, 60*time.Second)
	setDefault(&c.WriteWait, 10*time.Second)
	setDefault(&c.ReadBufferSize, 512)
	if c.PingPeriod >= c.PongWait {
		return fmt.Errorf("gateway: the ping period (%s) must be shorter than the pong wait (%s)", c.PingPeriod, c.PongWait)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return nil
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Server is the gateway's WebSocket endpoint. Any replica serves any
// conversation: it keeps no state beyond its open sockets.
type Server struct {
	cfg      Config
	upgrader websocket.Upgrader
	dialer   websocket.Dialer
	subjects subjectCounter
	sessions registry
	draining atomic.Bool
	// unauthenticated counts the connections TrackConn sees before their
	// handshake ends; counted holds which.
	unauthenticated atomic.Int64
	counted         sync.Map // net.Conn → struct{}
}

// TrackConn is the http.Server's ConnState: it counts connections from
// accept until their WebSocket handshake ends (hijacked) or they close, and
// closes a new one at once when MaxUnauthenticated are already counted, so
// connections that never authenticate (slow headers, idle keep-alives)
// cannot pile up.
func (s *Server) TrackConn(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		if s.unauthenticated.Add(1) > int64(s.cfg.MaxUnauthenticated) {
			s.unauthenticated.Add(-1)
			s.cfg.Metrics.Refused.WithLabelValues(refusedUnauthLimit).Inc()
			_ = c.Close()
			return
		}
		s.counted.Store(c, struct{}{})
		s.cfg.Metrics.Unauthenticated.Inc()
	case http.StateHijacked, http.StateClosed:
		if _, ok := s.counted.LoadAndDelete(c); ok {
			s.unauthenticated.Add(-1)
			s.cfg.Metrics.Unauthenticated.Dec()
		}
	}
}

// NewServer checks cfg and returns a Server.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	// Write buffers are taken from a pool for each write, so an idle
	// socket holds none.
	pool := &sync.Pool{}
	s := &Server{cfg: cfg, sessions: registry{sessions: map[*session]struct{}{}}}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.WriteWait,
		ReadBufferSize:   cfg.ReadBufferSize, WriteBufferSize: 4096, WriteBufferPool: pool,
		Subprotocols: []string{protocol.Subprotocol},
		// The Origin was checked against the allow-list by Authenticate.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	tcp := &net.Dialer{Timeout: cfg.DialTimeout}
	s.dialer = websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := tcp.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return newFrameConn(c, false, true), nil
		},
		HandshakeTimeout: cfg.DialTimeout,
		ReadBufferSize:   cfg.ReadBufferSize, WriteBufferSize: 4096, WriteBufferPool: pool,
		Subprotocols: []string{protocol.Subprotocol},
	}
	return s, nil
}

// ServeHTTP authenticates a client and binds its socket to the
// conversation in its path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Retry-After", "0")
		http.Error(w, "this gateway is shutting down: connect again", http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "a conversation is a WebSocket: GET with an upgrade", http.StatusMethodNotAllowed)
		return
	}
	ns, name, cursor, err := protocol.ParseConversationURL(r.URL)
	if err != nil {
		s.cfg.Metrics.Refused.WithLabelValues(refusedBadRequest).Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) || !offers(r, protocol.Subprotocol) {
		s.cfg.Metrics.Refused.WithLabelValues(refusedBadRequest).Inc()
		http.Error(w, "a WebSocket upgrade with the subprotocol "+protocol.Subprotocol+" is required", http.StatusBadRequest)
		return
	}
	id, err := s.cfg.Auth.Authenticate(r)
	if err != nil {
		var aerr *auth.Error
		if !errors.As(err, &aerr) {
			aerr = &auth.Error{Reason: auth.ReasonMalformed, Message: "the token was refused"}
		}
		s.cfg.Metrics.AuthFailures.WithLabelValues(string(aerr.Reason)).Inc()
		if aerr.Reason == auth.ReasonForbiddenOrigin {
			// Never upgrade a cross-site request.
			http.Error(w, aerr.Message, http.StatusForbidden)
			return
		}
		// Browsers see no HTTP status of a refused WebSocket: upgrade and
		// close with the code that tells the client to get a new token.
		s.refuse(w, r, protocol.CloseUnauthorized, aerr.Message)
		return
	}
	if !s.subjects.allowConnect(id.Subject, rate.Limit(s.cfg.ConnectRate), s.cfg.ConnectBurst) {
		s.cfg.Metrics.Refused.WithLabelValues(refusedConnectRate).Inc()
		s.refuse(w, r, protocol.CloseRateLimited, fmt.Sprintf("too many connects: at most %g a second per subject", s.cfg.ConnectRate))
		return
	}
	release, ok := s.subjects.acquire(id.Subject, s.cfg.MaxConnsPerSubject)
	if !ok {
		s.cfg.Metrics.Refused.WithLabelValues(refusedTooManyConns).Inc()
		s.refuse(w, r, protocol.CloseRateLimited, fmt.Sprintf("too many connections: at most %d per subject", s.cfg.MaxConnsPerSubject))
		return
	}
	key := types.NamespacedName{Namespace: ns, Name: name}
	d, err := s.decide(r.Context(), key, id.Subject)
	if err != nil {
		release()
		s.cfg.Log.Error(err, "reading a Conversation from the cache", "conversation", key)
		http.Error(w, "the gateway cannot read conversations now", http.StatusServiceUnavailable)
		return
	}
	var up *websocket.Conn
	switch d.Action {
	case Refuse:
		release()
		s.cfg.Metrics.Refused.WithLabelValues(refusalFor(d.CloseCode)).Inc()
		s.refuse(w, r, d.CloseCode, d.Reason)
		return
	case Route:
		// Dial the owner before upgrading, so its refusal can be passed on.
		var status int
		changed, stopChanges := s.changes(key)
		up, status, _, err = s.dialUnlessMoved(r.Context(), key, id.Subject, cursor, d, changed)
		stopChanges()
		if err != nil && status == http.StatusTooManyRequests {
			release()
			s.cfg.Metrics.Refused.WithLabelValues(refusedTooManyConns).Inc()
			s.refuse(w, r, protocol.CloseRateLimited, tooManyOnConversation)
			return
		}
		if err != nil && passThrough(status) {
			release()
			s.cfg.Metrics.Refused.WithLabelValues(refusedUpstreamError).Inc()
			w.Header().Set("Retry-After", "1")
			http.Error(w, "the conversation's owner cannot serve it now", http.StatusServiceUnavailable)
			return
		}
		// Otherwise the owner is gone or moving: hold.
	}
	client, err := s.upgrader.Upgrade(&framingWriter{ResponseWriter: w}, r, nil)
	if err != nil {
		release()
		if up != nil {
			closeConn(up, protocol.CloseNormal, "client gone", s.cfg.WriteWait)
		}
		return // the upgrader answered
	}
	sess := newSession(s, key, id.Subject, client, cursor, d, release)
	sess.expireAt(id.Expiry)
	sess.readClient()
	go sess.runUpstream(up)
}

// decide reads the conversation and the pod it names as owner from the
// caches and decides where subject's socket goes.
func (s *Server) decide(ctx context.Context, key types.NamespacedName, subject string) (Decision, error) {
	conv, err := s.cfg.Conversations.Get(ctx, key)
	if err != nil {
		return Decision{}, err
	}
	var pod *corev1.Pod
	if conv != nil && conv.Status.Owner != nil {
		if pod, err = s.cfg.Conversations.Pod(ctx, types.NamespacedName{Namespace: key.Namespace, Name: conv.Status.Owner.Name}); err != nil {
			return Decision{}, err
		}
	}
	return Decide(conv, pod, subject), nil
}

// dial connects to a conversation's owner, resuming at cursor. status is
// the owner's HTTP status when it refused.
func (s *Server) dial(ctx context.Context, addr string, key types.NamespacedName, subject string, cursor protocol.Cursor) (*websocket.Conn, int, error) {
	u := url.URL{Scheme: "ws", Host: addr, Path: protocol.ConversationPath(key.Namespace, key.Name),
		RawQuery: cursor.Query().Encode()}
	token, err := s.cfg.UpstreamToken()
	if err != nil {
		s.cfg.Log.Error(err, "the gateway has no token for the runtimes")
		return nil, http.StatusUnauthorized, err
	}
	dialer := s.dialer
	if s.cfg.RuntimeCA != nil {
		roots, err := s.cfg.RuntimeCA.Pool()
		if err != nil {
			return nil, 0, err
		}
		u.Scheme = "wss"
		tlsConfig := &tls.Config{RootCAs: roots, ServerName: protocol.RuntimeServerName(key.Namespace), MinVersion: tls.VersionTLS13}
		// The frameConn goes above TLS: it reads frames, not records.
		dialer.NetDialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{Timeout: s.cfg.DialTimeout}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(c, tlsConfig)
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = c.Close()
				return nil, err
			}
			return newFrameConn(tc, false, true), nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	// gorilla/websocket bounds the handshake by ctx's deadline only: an
	// owner that took the connection and never answers (frozen, or its
	// node lost) would hold a cancelled dial until the timeout. Cancelling
	// ctx expires the connection's deadline, which ends the handshake.
	var (
		mu     sync.Mutex
		dialed net.Conn
	)
	keep := func(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
		if dial == nil {
			return nil
		}
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err == nil {
				mu.Lock()
				dialed = c
				mu.Unlock()
			}
			return c, err
		}
	}
	dialer.NetDialContext, dialer.NetDialTLSContext = keep(dialer.NetDialContext), keep(dialer.NetDialTLSContext)
	stopWatching := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if dialed != nil {
			_ = dialed.SetDeadline(time.Unix(1, 0))
		}
	})
	conn, resp, err := dialer.DialContext(ctx, u.String(), http.Header{"Authorization": {"Bearer " + token}, protocol.SubjectHeader: {subject}})
	if !stopWatching() && err == nil {
		// Cancelled as the handshake ended: the connection's deadline is
		// spent.
		_ = conn.Close()
		conn, err = nil, ctx.Err()
	}
	status := 0
	if resp != nil {
		status = resp.StatusCode
		if resp.Body != nil {
			_ = resp.Body.Close()
		}
	}
	if err != nil {
		if status == http.StatusUnauthorized {
			s.cfg.Log.Error(err, "the owner refused the gateway's upstream token: check the runtime's --gateway-identity and --gateway-audience against the gateway's ServiceAccount and projected token", "owner", addr)
		}
		return nil, status, fmt.Errorf("connecting to the owner at %s: %w", addr, err)
	}
	if conn.Subprotocol() != protocol.Subprotocol {
		closeConn(conn, protocol.CloseBadRequest, "subprotocol "+protocol.Subprotocol+" required", s.cfg.WriteWait)
		return nil, 0, fmt.Errorf("the owner at %s did not speak %s", addr, protocol.Subprotocol)
	}
	return conn, status, nil
}

// tooManyOnConversation is the close reason when the owner refuses one more
// socket on the conversation (its cap on sockets per conversation).
const tooManyOnConversation = "too many sockets on this conversation: close one, then reconnect"

// passThrough reports whether an owner's refusal goes to the client as it
// is, rather than being held through: the owner is there but cannot serve
// (its event log is unavailable).
func passThrough(status int) bool { return status == http.StatusServiceUnavailable }

// refuse upgrades and closes at once: browsers learn why only from a close
// code.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, reason string) {
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	closeConn(ws, code, reason, s.cfg.WriteWait)
}

// Drain closes every session with 1001 so its client reconnects to another
// replica, refuses new ones, and waits for the sessions to end or ctx.
func (s *Server) Drain(ctx context.Context) error {
	s.draining.Store(true)
	for _, sess := range s.sessions.all() {
		sess.end(protocol.CloseGoingAway, "this gateway is shutting down: reconnect")
	}
	return s.sessions.wait(ctx)
}

// Sessions is the number of client sockets open.
func (s *Server) Sessions() int { return s.sessions.len() }

func offers(r *http.Request, subprotocol string) bool {
	for _, p := range websocket.Subprotocols(r) {
		if p == subprotocol {
			return true
		}
	}
	return false
}

func refusalFor(code int) string {
	switch code {
	case protocol.CloseForbidden:
		return refusedForbidden
	case protocol.CloseFinished:
		return refusedFinished
	}
	return refusedNotFound
}

// framingWriter hands the upgrader a frameConn over the hijacked
// connection, with whatever the HTTP server had already read of it.
type framingWriter struct{ http.ResponseWriter }

func (w *framingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	fc := newFrameConn(c, true, false)
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Peek(n)
		if err := fc.preload(b); err != nil {
			_ = c.Close()
			return nil, nil, err
		}
		_, _ = brw.Discard(n)
	}
	return fc, brw, nil
}

func (w *framingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// closeConn sends a close frame (protocol.CloseMessage: no reserved code,
// a reason of at most 123 bytes) and closes the connection.
func closeConn(ws *websocket.Conn, code int, reason string, wait time.Duration) {
	_ = ws.WriteControl(websocket.CloseMessage, protocol.CloseMessage(code, reason), time.Now().Add(wait))
	_ = ws.Close()
}

// changes returns a channel that has a value once conversation key changed
// since the last receive, and the function that stops it.
func (s *Server) changes(key types.NamespacedName) (<-chan struct{}, func()) {
	changed := make(chan struct{}, 1)
	stop := s.cfg.Conversations.OnChange(key, func() {
		select {
		case changed <- struct{}{}:
		default: // a notification is already pending; one is enough
		}
	})
	return changed, stop
}

// dialUnlessMoved dials the owner d routes to, and gives the dial up as soon
// as the conversation's status names another owner (moved). An owner that
// was force-deleted, lost with its node or frozen does not refuse a dial: it
// leaves it hanging until the dial timeout (seconds), while the manager may
// have moved the conversation long before. Changes that keep the owner (a
// phase written each turn) leave the dial alone.
func (s *Server) dialUnlessMoved(ctx context.Context, key types.NamespacedName, subject string, cursor protocol.Cursor, d Decision,
	changed <-chan struct{}) (up *websocket.Conn, status int, moved bool, err error) {
	dialCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var gaveUp atomic.Bool
	done, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-done:
				return
			case <-changed:
				now, err := s.decide(ctx, key, subject)
				if err == nil && (now.Action != Route || now.Upstream != d.Upstream || now.Epoch != d.Epoch) {
					gaveUp.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	up, status, err = s.dial(dialCtx, d.Upstream, key, subject, cursor)
	close(done)
	<-watched
	if err != nil && gaveUp.Load() {
		return nil, 0, true, err
	}
	// Connected just as the owner changed: the runtime closes a stale
	// owner's socket itself, and the session follows, as before.
	return up, status, false, err
}
