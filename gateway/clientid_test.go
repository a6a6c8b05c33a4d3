package gateway

import (
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// TestOnlyValidFramesAreTracked: a frame kept until its ack (and sent again
// to every new owner) must be one the owner accepts; a frame whose head
// carries an id but that fails validation would otherwise pin up to 64 ×
// 32 KiB per socket.
func TestOnlyValidFramesAreTracked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kind  int
		frame string
		want  string
	}{
		{"a message", websocket.TextMessage, `{"type":"message","id":"m1","text":"hi"}`, "m1"},
		{"an answer", websocket.TextMessage, `{"type":"answer","id":"a1","promptId":"p","text":"approve"}`, "a1"},
		{"a message whose text is over the limit", websocket.TextMessage, `{"type":"message","id":"m2","text":"` + strings.Repeat("x", 30000) + `"}`, ""},
		{"a message whose text escapes over the event limit", websocket.TextMessage, `{"type":"message","id":"m3","text":"` + strings.Repeat("<", 16000) + `"}`, ""},
		{"an id the protocol refuses", websocket.TextMessage, `{"type":"message","id":"m 4","text":"hi"}`, ""},
		{"a message without text", websocket.TextMessage, `{"type":"message","id":"m5"}`, ""},
		{"an unknown type with an id", websocket.TextMessage, `{"type":"launch","id":"m6"}`, ""},
		{"binary", websocket.BinaryMessage, `{"type":"message","id":"m7","text":"hi"}`, ""},
	} {
		if got := clientID(tc.kind, []byte(tc.frame)); got != tc.want {
			t.Errorf("%s: tracked as %q, want %q", tc.name, got, tc.want)
		}
	}
}
