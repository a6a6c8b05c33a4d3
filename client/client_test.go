package client_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"tether.dev/tether/client"
	"tether.dev/tether/protocol"
)

// script is what a fake server does with each connection in turn: it
// answers with frames, then closes with 1001 (reconnect at once); the
// cursor each connection asked for is passed to the test.
type script struct {
	frames []protocol.ServerFrame
}

func serve(t *testing.T, steps []script) (string, <-chan protocol.Cursor) {
	t.Helper()
	cursors := make(chan protocol.Cursor, len(steps)+8)
	upgrader := websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}}
	n := 0
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _, cursor, err := protocol.ParseConversationURL(r.URL)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cursors <- cursor
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer func() { _ = ws.Close() }()
		if n >= len(steps) {
			time.Sleep(time.Minute) // the test ends before
			return
		}
		step := steps[n]
		n++
		for _, f := range step.frames {
			if err := ws.WriteJSON(f); err != nil {
				return
			}
		}
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(protocol.CloseGoingAway, ""), time.Now().Add(time.Second))
	})}
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return (&url.URL{Scheme: "ws", Host: l.Addr().String(), Path: protocol.ConversationPath("ns", "c")}).String(), cursors
}

func event(seq int64) protocol.ServerFrame {
	return protocol.EventFrame(seq, protocol.EventAssistantMessage, "", time.Now(), []byte(`{"text":"x"}`))
}

// TestResetStartsOver: a server that cannot honour the cursor sends a reset
// frame; the client delivers it, forgets its cursor, delivers the new
// history's events although their sequence numbers are below the old
// cursor, and resumes within the new history on its next connection.
func TestResetStartsOver(t *testing.T) {
	u, cursors := serve(t, []script{
		{frames: []protocol.ServerFrame{
			protocol.ResetFrame(protocol.ResetLogChanged, "log-2", "another history"),
			event(1), event(2),
			protocol.ReplayCompleteFrame(true, 1, 2, "log-2"),
		}},
		{frames: []protocol.ServerFrame{event(3), protocol.ReplayCompleteFrame(true, 1, 3, "log-2")}},
	})
	c := client.Connect(context.Background(), client.Config{URL: u, Token: client.StaticToken("t"), After: 7, Log: "log-1", MinBackoff: 10 * time.Millisecond})
	defer func() { _ = c.Close() }()

	want := []string{"reset", "event", "event", "replay_complete", "event", "replay_complete"}
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case f := <-c.Frames():
			switch f.Type {
			case protocol.TypeEvent:
				got = append(got, "event")
			default:
				got = append(got, f.Type)
			}
		case <-timeout:
			t.Fatalf("frames so far: %v", got)
		}
	}
	for i, w := range want {
		if got[i] != w {
			t.Fatalf("frames %v, want %v", got, want)
		}
	}
	if first := <-cursors; first != (protocol.Cursor{After: 7, Log: "log-1"}) {
		t.Fatalf("first connection's cursor %+v, want the caller's", first)
	}
	if second := <-cursors; second != (protocol.Cursor{After: 2, Log: "log-2"}) {
		t.Fatalf("second connection's cursor %+v, want after 2 of the new history", second)
	}
	if c.LastSeq() != 3 || c.Log() != "log-2" || c.Resets() != 1 {
		t.Fatalf("client at %d of %q after %d resets", c.LastSeq(), c.Log(), c.Resets())
	}
}

// TestRepeatsAreCounted: an event the server sends again at or below the
// client's cursor is dropped and counted, never delivered twice.
func TestRepeatsAreCounted(t *testing.T) {
	u, _ := serve(t, []script{{frames: []protocol.ServerFrame{event(1), event(2), event(2), event(1), event(3)}}})
	c := client.Connect(context.Background(), client.Config{URL: u, Token: client.StaticToken("t"), MinBackoff: 10 * time.Millisecond})
	defer func() { _ = c.Close() }()
	var seqs []int64
	timeout := time.After(10 * time.Second)
	for len(seqs) < 3 {
		select {
		case f := <-c.Frames():
			if f.Type == protocol.TypeEvent {
				seqs = append(seqs, f.Seq)
			}
		case <-timeout:
			t.Fatalf("events so far: %v", seqs)
		}
	}
	if seqs[0] != 1 || seqs[1] != 2 || seqs[2] != 3 || c.Repeats() != 2 {
		t.Fatalf("delivered %v with %d repeats counted; want 1 2 3 and 2", seqs, c.Repeats())
	}
}

// TestLastSeqIsDelivered: a client closed while an event waits for the
// caller to take it (its queue full) reports as LastSeq the last event the
// caller can still take, never that one: resuming from LastSeq loses
// nothing. (The chaos suite saw a client resume past an event it never got.)
func TestLastSeqIsDelivered(t *testing.T) {
	const sent = 300 // more than the client's queue of 256
	frames := make([]protocol.ServerFrame, 0, sent)
	for i := range sent {
		frames = append(frames, event(int64(i+1)))
	}
	u, _ := serve(t, []script{{frames: frames}})
	c := client.Connect(context.Background(), client.Config{URL: u, Token: client.StaticToken("t"), MinBackoff: 10 * time.Millisecond})
	eventually(t, "the client's queue full and an event waiting", func() bool { return c.LastSeq() > 256 })
	_ = c.Close()
	var last int64
	for f := range c.Frames() {
		if f.Type == protocol.TypeEvent {
			last = f.Seq
		}
	}
	if c.LastSeq() != last {
		t.Fatalf("LastSeq %d after Close, but the last event the caller got is %d", c.LastSeq(), last)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
