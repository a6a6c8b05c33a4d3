package gateway

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"tether.dev/tether/internal/testing/await"
)

// echoPumps is a loopback server whose sockets are read by pumps that echo
// each message back; it counts the pumps that ended and keeps the sockets
// so a test can close them from this side.
type echoPumps struct {
	srv   *httptest.Server
	ended atomic.Int32
	twice atomic.Int32 // pumps that ended more than once
	mu    sync.Mutex
	conns []*websocket.Conn
}

func newEchoPumps(t *testing.T) *echoPumps {
	t.Helper()
	e := &echoPumps{}
	up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 512}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(&framingWriter{ResponseWriter: w}, r, nil)
		if err != nil {
			return
		}
		answerPings(ws, time.Second)
		e.mu.Lock()
		e.conns = append(e.conns, ws)
		e.mu.Unlock()
		var wmu sync.Mutex
		var ended atomic.Bool
		startPump(ws, func(kind int, data []byte) bool {
			wmu.Lock()
			defer wmu.Unlock()
			return ws.WriteMessage(kind, data) == nil
		}, func(error) {
			_ = ws.Close()
			if ended.Swap(true) {
				e.twice.Add(1)
			}
			e.ended.Add(1)
		})
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *echoPumps) dial(t *testing.T) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return c
}

// roundTrip sends a ping and a message and waits for the pong and the echo.
func roundTrip(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ponged := false
	c.SetPongHandler(func(string) error { ponged = true; return nil })
	if err := c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, got, err := c.ReadMessage()
	if err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v; want %q", got, err, msg)
	}
	if !ponged {
		t.Fatal("the ping sent before the message was not answered before its echo")
	}
}

// TestIdleSocketsHoldNoGoroutine: sockets read by pumps hold no goroutine
// once quiet, are read again when a frame comes (a ping answered, a message
// echoed), and a pump waiting on the poller ends when its peer closes the
// socket, or when this side closes it.
func TestIdleSocketsHoldNoGoroutine(t *testing.T) {
	if sharedPoller() == nil {
		t.Skip("no readiness poller on this platform: pumps keep their goroutines")
	}
	e := newEchoPumps(t)
	base := runtime.NumGoroutine() // the package's control plane and controllers
	const n = 200
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		clients[i] = e.dial(t)
		roundTrip(t, clients[i], "hello")
	}
	// The HTTP connections' goroutines end with their hijack and the
	// clients have none: with a goroutine per socket there would be n more.
	await.Until(t, 10*time.Second, "the pumps to give up their goroutines", func() bool {
		return runtime.NumGoroutine() < base+n/10
	})
	for round := range 3 {
		for i, c := range clients {
			roundTrip(t, c, strings.Repeat("x", 1+(i+round)%700))
		}
	}
	// The peers close half of the sockets, this side the other half.
	for _, c := range clients[:n/2] {
		_ = c.Close()
	}
	e.mu.Lock()
	conns := e.conns
	e.mu.Unlock()
	if len(conns) != n {
		t.Fatalf("%d sockets on the server, want %d", len(conns), n)
	}
	for _, ws := range conns {
		_ = ws.Close() // the first half again: a second close changes nothing
	}
	await.Until(t, 10*time.Second, "every pump to end", func() bool { return e.ended.Load() >= n })
	if got := e.twice.Load(); got != 0 {
		t.Fatalf("%d pumps ended twice", got)
	}
}
