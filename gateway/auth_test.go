package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"tether.dev/tether/gateway"
	"tether.dev/tether/gateway/auth"
	"tether.dev/tether/protocol"
)

// TestRefusals: every way in that must fail is refused with the HTTP status
// or close code that tells the client what to do; a valid token is let in.
func TestRefusals(t *testing.T) {
	ns := awaitingOnOneRuntime(t, "127.0.26.1", "guarded")
	g := startGateway(t, func(c *gateway.Config) { c.MessageRate, c.MessageBurst, c.MaxConnsPerSubject = 5, 5, 3 })
	url := g.url(ns, "guarded")

	otherSecret := []byte("not-the-gateway-secret-0123456789abcdef")
	badSignature, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "alice", Audience: jwt.ClaimStrings{audience}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(otherSecret)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		url    string
		header http.Header
		// act runs on an accepted socket; nil reads its first frame.
		act        func(*testing.T, *websocket.Conn)
		wantStatus int // an HTTP refusal before any upgrade
		wantClose  int // a close code after the upgrade; 0 for accepted
	}{
		{name: "no token", header: http.Header{}, wantClose: protocol.CloseUnauthorized},
		{name: "not a JWT", header: bearer("hello"), wantClose: protocol.CloseUnauthorized},
		{name: "bad signature", header: bearer(badSignature), wantClose: protocol.CloseUnauthorized},
		{name: "expired", header: bearer(token(t, "alice", func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		})), wantClose: protocol.CloseUnauthorized},
		{name: "wrong audience", header: bearer(token(t, "alice", func(c *jwt.RegisteredClaims) {
			c.Audience = jwt.ClaimStrings{"someone-else"}
		})), wantClose: protocol.CloseUnauthorized},
		{name: "wrong subject", header: bearer(token(t, "mallory")), wantClose: protocol.CloseForbidden},
		{name: "no such conversation", url: g.url(ns, "missing"), header: bearer(token(t, "alice")), wantClose: protocol.CloseForbidden},
		{name: "a token valid for a century", header: bearer(token(t, "alice", func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Now().AddDate(100, 0, 0))
		})), wantClose: protocol.CloseUnauthorized},
		{name: "forbidden origin", header: http.Header{"Authorization": {"Bearer " + token(t, "alice")}, "Origin": {"https://evil.example"}},
			wantStatus: http.StatusForbidden},
		{name: "bad cursor", url: url + "?after=-1", header: bearer(token(t, "alice")), wantStatus: http.StatusBadRequest},
		{name: "oversized frame", header: bearer(token(t, "alice")), wantClose: protocol.CloseMessageTooBig,
			act: func(_ *testing.T, ws *websocket.Conn) {
				big := fmt.Sprintf(`{"type":"message","id":"big","text":%q}`, strings.Repeat("x", protocol.MaxClientFrameBytes))
				_ = ws.WriteMessage(websocket.TextMessage, []byte(big))
			}},
		{name: "message flood", header: bearer(token(t, "alice")), wantClose: protocol.CloseRateLimited,
			act: func(_ *testing.T, ws *websocket.Conn) {
				for i := range 50 {
					if ws.WriteJSON(protocol.ClientFrame{Type: protocol.TypeMessage, ID: fmt.Sprintf("f%d", i), Text: "spam"}) != nil {
						return
					}
				}
			}},
		{name: "token in the subprotocol, allowed origin", header: http.Header{
			"Sec-WebSocket-Protocol": {protocol.Subprotocol + ", " + auth.TokenSubprotocolPrefix + token(t, "alice")},
			"Origin":                 {"https://chat.example"},
		}},
		{name: "valid bearer token", header: bearer(token(t, "alice"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := url
			if tt.url != "" {
				u = tt.url
			}
			d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
			if tt.header.Get("Sec-WebSocket-Protocol") == "" {
				d.Subprotocols = []string{protocol.Subprotocol}
			}
			ws, resp, err := d.Dial(u, tt.header)
			if resp != nil && resp.Body != nil {
				_ = resp.Body.Close()
			}
			if tt.wantStatus != 0 {
				if err == nil || resp == nil || resp.StatusCode != tt.wantStatus {
					t.Fatalf("dial: %v, response %+v; want HTTP %d", err, resp, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer func() { _ = ws.Close() }()
			if ws.Subprotocol() != protocol.Subprotocol {
				t.Fatalf("subprotocol %q: the token must never be echoed", ws.Subprotocol())
			}
			if tt.act != nil {
				tt.act(t, ws)
			}
			if tt.wantClose != 0 {
				if code := closeCode(t, ws); code != tt.wantClose {
					t.Fatalf("close %d, want %d", code, tt.wantClose)
				}
				return
			}
			f, err := readFrame(t, ws)
			if err != nil || f.Type != protocol.TypeEvent || f.Seq != 1 {
				t.Fatalf("first frame %+v, %v; want the first event", f, err)
			}
		})
	}

	t.Run("connections per subject", func(t *testing.T) {
		for deadline := time.Now().Add(5 * time.Second); g.srv.Sessions() > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d sockets of the cases above still open", g.srv.Sessions())
			}
		}
		var open []*websocket.Conn
		for range 3 {
			ws, _, err := dialRaw(t, url, bearer(token(t, "alice")))
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, ws)
		}
		ws, _, err := dialRaw(t, url, bearer(token(t, "alice")))
		if err != nil {
			t.Fatal(err)
		}
		if code := closeCode(t, ws); code != protocol.CloseRateLimited {
			t.Fatalf("the 4th socket closed with %d, want %d", code, protocol.CloseRateLimited)
		}
		_ = open[0].Close()
		// The slot comes back once the gateway sees the socket go.
		deadline := time.Now().Add(5 * time.Second)
		for {
			ws, _, err := dialRaw(t, url, bearer(token(t, "alice")))
			if err != nil {
				t.Fatal(err)
			}
			if f, err := readFrame(t, ws); err == nil && f.Type == protocol.TypeEvent {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no slot after a socket closed")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestSessionEndsWithItsToken: a socket does not outlive its token: it is
// closed with 4001 when the token expires (the client then gets a new one).
func TestSessionEndsWithItsToken(t *testing.T) {
	ns := awaitingOnOneRuntime(t, "127.0.27.1", "short")
	g := startGateway(t)
	expires := time.Now().Add(2 * time.Second)
	ws, _, err := dialRaw(t, g.url(ns, "short"), bearer(token(t, "alice", func(c *jwt.RegisteredClaims) {
		c.ExpiresAt = jwt.NewNumericDate(expires)
	})))
	if err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, ws); code != protocol.CloseUnauthorized {
		t.Fatalf("close %d, want %d", code, protocol.CloseUnauthorized)
	}
	if early := time.Until(expires.Truncate(time.Second)); early > 0 {
		t.Fatalf("closed %s before the token expired", early)
	}
}
