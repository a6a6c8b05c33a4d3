package client

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"tether.dev/tether/protocol"
)

// ErrQueueFull is returned by Send and Answer when QueueSize messages await
// their acknowledgement; nothing was queued.
var ErrQueueFull = errors.New("client: the send queue is full: wait for acknowledgements")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("client: closed")

// Config configures a Client. Zero values take the defaults in brackets.
type Config struct {
	// URL of the conversation's socket:
	// ws(s)://GATEWAY/v1/conversations/NAMESPACE/NAME.
	URL string
	// Token returns the token to connect with; it is called for every
	// connection, so an expired token can be replaced.
	Token func(context.Context) (string, error)
	// Header is sent with every connection (an Origin, say).
	Header http.Header
	// After is the last sequence number the caller already has [0: all
	// retained history], and Log the history it belongs to (the Log of the
	// last replay_complete or reset frame the caller saw; empty if it
	// does not know).
	After int64
	Log   string
	// QueueSize bounds the messages awaiting acknowledgement [64].
	QueueSize int
	// MinBackoff and MaxBackoff bound the jittered delay between
	// reconnects [100ms, 10s].
	MinBackoff, MaxBackoff time.Duration
	// Dialer dials the gateway [a dialer with a 10 s handshake timeout].
	Dialer *websocket.Dialer
}

// StaticToken returns a Token function that always returns token.
func StaticToken(token string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return token, nil }
}

// Client is a conversation's socket that survives drops.
type Client struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	frames chan protocol.ServerFrame
	done   chan struct{}
	idBase string

	// writeMu serializes writes to the socket; it is taken while mu is
	// held (so frames go out in queue order) and held alone while writing,
	// so a slow socket never blocks the reader, which needs mu.
	writeMu sync.Mutex
	mu      sync.Mutex
	conn    *websocket.Conn
	queue   []protocol.ClientFrame // sent or to send, not yet acknowledged
	nextID  uint64
	lastSeq int64
	logID   string
	resets  int
	prompt  *protocol.Prompt
	// promptSeq is the seq of the prompt held: an answer names it, so it
	// is applied only to the question this client was shown.
	promptSeq int64
	err       error
	binds     int
	repeats   int
}

// Connect starts the client: it connects in the background, and again
// whenever the socket drops, until Close or a close code that reconnecting
// cannot help (then Err says why).
func Connect(ctx context.Context, cfg Config) *Client {
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 64
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	}
	var b [6]byte
	_, _ = cryptorand.Read(b[:])
	ctx, cancel := context.WithCancel(ctx)
	c := &Client{
		cfg: cfg, ctx: ctx, cancel: cancel, frames: make(chan protocol.ServerFrame, 256),
		done: make(chan struct{}), idBase: "c" + hex.EncodeToString(b[:]) + "-", lastSeq: cfg.After, logID: cfg.Log,
	}
	go c.run()
	return c
}

// Frames delivers what the conversation says: each event once and in
// order, deltas, acks, status and replay markers, pending prompts and error
// frames. It is closed when the client stops. Read it promptly: the client
// stops reading the socket while it is full.
//
// A reset frame means the server could not honour the client's cursor (the
// conversation was deleted and created again, its store lost history, or
// the cursor was ahead of the log): the client has already forgotten its
// cursor and prompt, and the events that follow are the conversation's
// history from its first retained event. A caller that shows a transcript
// clears it when it sees one.
func (c *Client) Frames() <-chan protocol.ServerFrame { return c.frames }

// Send queues a message and returns its client id.
func (c *Client) Send(text string) (string, error) {
	return c.enqueue(protocol.ClientFrame{Type: protocol.TypeMessage, Text: text})
}

// Answer queues the answer to prompt promptID and returns its client id.
//
// When promptID is the question the client holds (Prompt), the answer names
// that exact question (its seq): if the agent has since asked another
// question under the same id, the answer is refused rather than applied to
// a question this client never showed.
func (c *Client) Answer(promptID, text string) (string, error) {
	return c.answer(protocol.ClientFrame{Type: protocol.TypeAnswer, PromptID: promptID, Text: text})
}

// Decide queues a decision on a review prompt (protocol.DecisionAccept,
// DecisionEdit with the edited args, DecisionRespond with text, or
// DecisionIgnore) and returns its client id.
func (c *Client) Decide(promptID, decision string, args json.RawMessage, text string) (string, error) {
	return c.answer(protocol.ClientFrame{Type: protocol.TypeAnswer, PromptID: promptID, Decision: decision, Args: args, Text: text})
}

func (c *Client) answer(f protocol.ClientFrame) (string, error) {
	c.mu.Lock()
	if c.prompt != nil && c.prompt.ID == f.PromptID {
		f.PromptSeq = c.promptSeq
	}
	c.mu.Unlock()
	return c.enqueue(f)
}

func (c *Client) enqueue(f protocol.ClientFrame) (string, error) {
	if err := c.ctx.Err(); err != nil {
		return "", ErrClosed
	}
	c.mu.Lock()
	if len(c.queue) >= c.cfg.QueueSize {
		c.mu.Unlock()
		return "", ErrQueueFull
	}
	c.nextID++
	f.ID = c.idBase + strconv.FormatUint(c.nextID, 10)
	if err := f.Validate(); err != nil {
		c.mu.Unlock()
		return "", err
	}
	c.queue = append(c.queue, f)
	conn := c.conn
	if conn == nil {
		c.mu.Unlock()
		return f.ID, nil
	}
	c.writeMu.Lock()
	c.mu.Unlock()
	defer c.writeMu.Unlock()
	// A failed write is the socket's loss: the frame stays queued and is
	// sent again on the next connection.
	_ = writeFrame(conn, f)
	return f.ID, nil
}

// Prompt is the question the agent waits on, or nil.
func (c *Client) Prompt() *protocol.Prompt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prompt
}

// LastSeq is the sequence number of the last event delivered.
func (c *Client) LastSeq() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastSeq
}

// Log is the identity of the history LastSeq belongs to, as the server
// last named it.
func (c *Client) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logID
}

// Resets is how many times the server reset the client's cursor.
func (c *Client) Resets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resets
}

// Repeats counts the events the server sent at or below the client's
// cursor, which the client dropped: the protocol promises each event once,
// so a server that keeps it sends none.
func (c *Client) Repeats() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.repeats
}

// Pending is the number of messages awaiting acknowledgement.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Binds is how many times the client has connected.
func (c *Client) Binds() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.binds
}

// Done is closed when the client stopped; Err says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client stopped: nil after Close, or a *CloseError.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close stops the client and closes its socket.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	if c.conn != nil {
		_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(protocol.CloseNormal, ""), time.Now().Add(time.Second))
		_ = c.conn.Close()
	}
	c.mu.Unlock()
	<-c.done
	return nil
}

// CloseError is a close (or a refused connection) that reconnecting cannot
// help.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string { return fmt.Sprintf("closed with %d: %s", e.Code, e.Reason) }

func (c *Client) run() {
	defer close(c.done)
	defer close(c.frames)
	attempt := 0
	for c.ctx.Err() == nil {
		code, reason, bound := c.session()
		if c.ctx.Err() != nil {
			return
		}
		if bound {
			attempt = 0
		}
		action := protocol.ActionFor(code)
		if action == protocol.GiveUp {
			c.mu.Lock()
			c.err = &CloseError{Code: code, Reason: reason}
			c.mu.Unlock()
			return
		}
		delay := time.Duration(rand.Int64N(int64(c.cfg.MinBackoff))) //nolint:gosec // jitter, not a secret
		if action != protocol.Reconnect {
			attempt++
			delay = c.backoff(attempt)
		}
		select {
		case <-time.After(delay):
		case <-c.ctx.Done():
			return
		}
	}
}

// backoff is a full-jitter exponential delay.
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.cfg.MinBackoff << min(attempt, 16)
	if ceiling > c.cfg.MaxBackoff || ceiling <= 0 {
		ceiling = c.cfg.MaxBackoff
	}
	return c.cfg.MinBackoff/2 + time.Duration(rand.Int64N(int64(ceiling))) //nolint:gosec // jitter, not a secret
}

// session connects once and reads until the socket ends; it returns the
// close code (an HTTP refusal is mapped to one) and whether it connected.
func (c *Client) session() (code int, reason string, bound bool) {
	conn, err := c.dial()
	if err != nil {
		var ce *CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Reason, false
		}
		return websocket.CloseAbnormalClosure, err.Error(), false
	}
	defer func() { _ = conn.Close() }()
	c.mu.Lock()
	c.conn = conn
	c.binds++
	queued := slices.Clone(c.queue)
	c.writeMu.Lock()
	c.mu.Unlock()
	for _, f := range queued {
		if writeFrame(conn, f) != nil {
			break
		}
	}
	c.writeMu.Unlock()
	defer func() {
		c.mu.Lock()
		c.conn = nil
		c.mu.Unlock()
	}()
	const wait = 90 * time.Second // the gateway pings every 25 s
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	conn.SetPingHandler(func(data string) error {
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
	})
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Text, true
			}
			return websocket.CloseAbnormalClosure, err.Error(), true
		}
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		var f protocol.ServerFrame
		if err := json.Unmarshal(data, &f); err != nil {
			continue // not a frame of this protocol; nothing to do with it
		}
		seq, log := c.LastSeq(), c.Log()
		if !c.observe(f) {
			continue
		}
		select {
		case c.frames <- f:
		case <-c.ctx.Done():
			// Closed before the caller took it: the cursor stays at the
			// last event delivered, so one resuming from LastSeq gets it.
			c.mu.Lock()
			c.lastSeq, c.logID = seq, log
			c.mu.Unlock()
			return protocol.CloseNormal, "", true
		}
	}
}

func (c *Client) dial() (*websocket.Conn, error) {
	token, err := c.cfg.Token(c.ctx)
	if err != nil {
		return nil, fmt.Errorf("getting a token: %w", err)
	}
	u, err := url.Parse(c.cfg.URL)
	if err != nil {
		return nil, &CloseError{Code: protocol.CloseBadRequest, Reason: err.Error()}
	}
	q := u.Query()
	c.mu.Lock()
	for k, v := range (protocol.Cursor{After: c.lastSeq, Log: c.logID}).Query() {
		q[k] = v
	}
	if c.logID == "" {
		q.Del(protocol.LogParam)
	}
	c.mu.Unlock()
	u.RawQuery = q.Encode()
	header := http.Header{}
	for k, v := range c.cfg.Header {
		header[k] = v
	}
	header.Set("Authorization", "Bearer "+token)
	d := *c.cfg.Dialer
	d.Subprotocols = []string{protocol.Subprotocol}
	conn, resp, err := d.DialContext(c.ctx, u.String(), header)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, &CloseError{Code: codeForStatus(resp.StatusCode), Reason: fmt.Sprintf("HTTP %d", resp.StatusCode)}
		}
		return nil, err
	}
	return conn, nil
}

// codeForStatus maps a refused handshake to the close code that says what
// to do.
func codeForStatus(status int) int {
	switch status {
	case http.StatusUnauthorized:
		return protocol.CloseUnauthorized
	case http.StatusForbidden:
		return protocol.CloseForbidden
	case http.StatusNotFound:
		return protocol.CloseNotFound
	case http.StatusBadRequest, http.StatusMethodNotAllowed:
		return protocol.CloseBadRequest
	case http.StatusTooManyRequests:
		return protocol.CloseRateLimited
	}
	return protocol.CloseInternal
}

// observe updates the client's state with a frame and reports whether the
// caller should see it: an event already delivered is not.
func (c *Client) observe(f protocol.ServerFrame) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch f.Type {
	case protocol.TypeEvent:
		if f.Seq <= c.lastSeq {
			c.repeats++
			return false
		}
		c.lastSeq = f.Seq
		switch f.Event {
		case protocol.EventPrompt:
			var p protocol.Prompt
			if json.Unmarshal(f.Data, &p) == nil {
				if f.Time != nil {
					p.AskedAt = *f.Time
				}
				c.prompt, c.promptSeq = &p, f.Seq
			}
		case protocol.EventAnswer, protocol.EventFinished, protocol.EventFailed:
			c.prompt, c.promptSeq = nil, 0
		}
		c.forget(f.ID)
	case protocol.TypeReset:
		// The cursor named another history, or one past its end: start
		// over with the history that follows.
		c.lastSeq, c.logID, c.prompt, c.promptSeq = 0, f.Log, nil, 0
		c.resets++
	case protocol.TypeReplayComplete:
		c.logID = f.Log
	case protocol.TypePendingPrompt:
		c.prompt, c.promptSeq = f.Prompt, f.Seq
	case protocol.TypeAck:
		c.forget(f.ID)
	case protocol.TypeError:
		switch protocol.Code(f.Code) {
		case protocol.CodeUnavailable, protocol.CodeHoldFull, protocol.CodeRateLimited:
			// Not applied: it stays queued and goes again with the next
			// connection, or after a pause.
			c.resendLater(f.ID)
		default:
			c.forget(f.ID)
		}
	}
	return true
}

func (c *Client) forget(id string) {
	if id == "" {
		return
	}
	for i, f := range c.queue {
		if f.ID == id {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			return
		}
	}
}

// resendLater sends a queued frame again after a jittered pause, on
// whatever connection is open then.
func (c *Client) resendLater(id string) {
	time.AfterFunc(c.backoff(1), func() {
		c.mu.Lock()
		conn := c.conn
		i := slices.IndexFunc(c.queue, func(f protocol.ClientFrame) bool { return f.ID == id })
		if conn == nil || i < 0 {
			c.mu.Unlock()
			return // the next connection sends the whole queue; or it was acked
		}
		f := c.queue[i]
		c.writeMu.Lock()
		c.mu.Unlock()
		defer c.writeMu.Unlock()
		_ = writeFrame(conn, f)
	})
}

// writeFrame writes one frame; callers hold c.writeMu.
func writeFrame(conn *websocket.Conn, f protocol.ClientFrame) error {
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return conn.WriteJSON(f)
}
