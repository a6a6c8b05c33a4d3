package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"tether.dev/tether/client"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/protocol"
)

// fakeServer runs a handler per connection and records every client frame.
type fakeServer struct {
	url    string
	mu     sync.Mutex
	frames []protocol.ClientFrame
	conns  int
}

func newFakeServer(t *testing.T, handle func(n int, ws *websocket.Conn, s *fakeServer)) *fakeServer {
	t.Helper()
	s := &fakeServer{}
	upgrader := websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}}
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer func() { _ = ws.Close() }()
		s.mu.Lock()
		s.conns++
		n := s.conns
		s.mu.Unlock()
		handle(n, ws, s)
	})}
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	s.url = (&url.URL{Scheme: "ws", Host: l.Addr().String(), Path: protocol.ConversationPath("ns", "c")}).String()
	return s
}

// read reads one client frame and records it.
func (s *fakeServer) read(ws *websocket.Conn) (protocol.ClientFrame, error) {
	var f protocol.ClientFrame
	if err := ws.ReadJSON(&f); err != nil {
		return f, err
	}
	s.mu.Lock()
	s.frames = append(s.frames, f)
	s.mu.Unlock()
	return f, nil
}

func (s *fakeServer) seen() []protocol.ClientFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]protocol.ClientFrame(nil), s.frames...)
}

func connect(t *testing.T, u string, queue int) *client.Client {
	t.Helper()
	c := client.Connect(context.Background(), client.Config{URL: u, Token: client.StaticToken("t"), QueueSize: queue,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	await.Until(t, 5*time.Second, what, cond)
}

// TestCloseCodes: what the client does after each kind of close.
func TestCloseCodes(t *testing.T) {
	for _, tc := range []struct {
		code    int
		givesUp bool
	}{
		{protocol.CloseForbidden, true}, {protocol.CloseNotFound, true}, {protocol.CloseFinished, true}, {protocol.CloseBadRequest, true},
		{protocol.CloseNotOwner, false}, {protocol.CloseGoingAway, false}, {protocol.CloseRateLimited, false}, {protocol.CloseHoldTimeout, false},
		{protocol.CloseInternal, false}, {protocol.CloseUnauthorized, false},
	} {
		t.Run(protocol.ActionFor(tc.code).String(), func(t *testing.T) {
			s := newFakeServer(t, func(_ int, ws *websocket.Conn, _ *fakeServer) {
				_ = ws.WriteControl(websocket.CloseMessage, protocol.CloseMessage(tc.code, "bye"), time.Now().Add(time.Second))
			})
			c := connect(t, s.url, 4)
			if tc.givesUp {
				select {
				case <-c.Done():
				case <-time.After(5 * time.Second):
					t.Fatalf("close %d: the client kept reconnecting", tc.code)
				}
				var ce *client.CloseError
				if !errors.As(c.Err(), &ce) || ce.Code != tc.code {
					t.Fatalf("close %d: the client stopped with %v", tc.code, c.Err())
				}
				return
			}
			eventually(t, "a reconnect", func() bool { return c.Binds() >= 2 })
		})
	}
}

// TestErrorFrames: a message refused as unavailable stays queued and is sent
// again; one refused for good is dropped from the queue; an ack removes it.
func TestErrorFrames(t *testing.T) {
	s := newFakeServer(t, func(_ int, ws *websocket.Conn, s *fakeServer) {
		for {
			f, err := s.read(ws)
			if err != nil {
				return
			}
			switch {
			case f.Text == "flaky" && len(s.seen()) == 1:
				_ = ws.WriteJSON(protocol.ErrorFrame(protocol.CodeUnavailable, f.ID, "send it again"))
			case f.Text == "flaky":
				_ = ws.WriteJSON(protocol.AckFrame(f.ID, 1, false))
			case f.Text == "bad":
				_ = ws.WriteJSON(protocol.ErrorFrame(protocol.CodeBusy, f.ID, "busy"))
			}
		}
	})
	c := connect(t, s.url, 4)
	eventually(t, "connected", func() bool { return c.Binds() == 1 })
	flaky, err := c.Send("flaky")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the flaky message acked after a second try", func() bool { return c.Pending() == 0 })
	if n := len(s.seen()); n != 2 || s.seen()[1].ID != flaky {
		t.Fatalf("the server got %+v, want the same message twice", s.seen())
	}
	if _, err := c.Send("bad"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the refused message dropped from the queue", func() bool { return c.Pending() == 0 })
}

// TestQueueIsBounded: with no connection, the queue takes QueueSize
// messages and refuses the next with ErrQueueFull; nothing is dropped.
func TestQueueIsBounded(t *testing.T) {
	c := connect(t, "ws://127.0.0.1:1/v1/conversations/ns/c", 2)
	for i := range 2 {
		if _, err := c.Send("m"); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, err := c.Send("one too many"); !errors.Is(err, client.ErrQueueFull) {
		t.Fatalf("the third message: %v, want ErrQueueFull", err)
	}
	if c.Pending() != 2 {
		t.Fatalf("%d pending, want 2", c.Pending())
	}
}

// TestBackoffBounds: the delay grows from MinBackoff/2 and never passes
// MinBackoff/2 + MaxBackoff, however many attempts.
func TestBackoffBounds(t *testing.T) {
	c := connect(t, "ws://127.0.0.1:1/v1/conversations/ns/c", 2)
	for attempt := range 64 {
		for range 20 {
			d := c.Backoff(attempt)
			if d < 5*time.Millisecond || d > 105*time.Millisecond {
				t.Fatalf("attempt %d: delay %s outside [5ms, 105ms]", attempt, d)
			}
		}
	}
}
