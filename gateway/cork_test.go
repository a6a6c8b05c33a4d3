package gateway

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// writeCounter records each write that reaches the network.
type writeCounter struct {
	net.Conn
	writes [][]byte
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *writeCounter) SetWriteDeadline(time.Time) error { return nil }

// TestCorkGathersWrites: corked writes reach the network as one write when
// uncorked, in order; uncorked writes go straight through; past the limit
// what gathered goes out first; a write larger than the limit is not
// copied.
func TestCorkGathersWrites(t *testing.T) {
	net := &writeCounter{}
	fc := newFrameConn(net, true, false)
	if _, err := fc.Write([]byte("a")); err != nil || len(net.writes) != 1 {
		t.Fatalf("an uncorked write: %d writes, %v", len(net.writes), err)
	}
	fc.cork()
	for _, s := range []string{"b", "cd", "e"} {
		if n, err := fc.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("a corked write returned %d, %v", n, err)
		}
	}
	if len(net.writes) != 1 {
		t.Fatalf("corked writes reached the network: %q", net.writes)
	}
	if err := fc.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(net.writes) != 2 || string(net.writes[1]) != "bcde" {
		t.Fatalf("uncorked: %q, want one write of bcde", net.writes)
	}
	if err := fc.uncork(); err != nil || len(net.writes) != 2 {
		t.Fatalf("an empty uncork wrote: %q, %v", net.writes, err)
	}

	net.writes = nil
	fc.cork()
	big := bytes.Repeat([]byte("x"), corkLimit-1)
	_, _ = fc.Write([]byte("12"))
	_, _ = fc.Write(big)     // over the limit with what gathered: that goes first
	_, _ = fc.Write(big[:1]) // fills the buffer to the limit
	huge := bytes.Repeat([]byte("y"), corkLimit+1)
	_, _ = fc.Write(huge) // what gathered goes; then this, straight through
	if err := fc.uncork(); err != nil {
		t.Fatal(err)
	}
	want := []int{2, corkLimit, corkLimit + 1}
	if len(net.writes) != len(want) {
		t.Fatalf("%d writes, want %d", len(net.writes), len(want))
	}
	for i, w := range net.writes {
		if len(w) != want[i] {
			t.Fatalf("write %d is %d bytes, want %d", i, len(w), want[i])
		}
	}
	if fc.wbuf != nil {
		t.Fatal("an uncorked connection still holds a buffer")
	}
}

// TestWholeMessageBuffered: a cork may wait for the next frame only when
// reading it cannot wait on the network.
func TestWholeMessageBuffered(t *testing.T) {
	text := frame(0x1, true, false, []byte("hello"))
	mid := frame(0x2, true, false, bytes.Repeat([]byte("m"), 300))
	for _, tc := range []struct {
		name     string
		buffered []byte
		want     bool
	}{
		{"nothing", nil, false},
		{"a whole text frame", text, true},
		{"a whole binary frame with a 16-bit length", mid, true},
		{"a whole masked frame", frame(0x1, true, true, []byte("hi")), true},
		{"the frame cut short", text[:len(text)-1], false},
		{"a header cut short", mid[:3], false},
		{"one byte", text[:1], false},
		{"a ping", frame(opPing, true, false, nil), false},
		{"a close", frame(opClose, true, false, []byte{0x03, 0xe8}), false},
		{"the first of several frames", frame(0x1, false, false, []byte("par")), false},
		{"a continuation", frame(0x0, true, false, []byte("t")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := newFrameConn(nil, false, false)
			if len(tc.buffered) > 0 {
				fc.take()
				fc.w = copy(fc.buf[:], tc.buffered)
			}
			if got := fc.wholeMessageBuffered(); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	fc := newFrameConn(nil, false, false)
	fc.take()
	fc.w = copy(fc.buf[:], text)
	fc.remaining = 3 // in the middle of a frame gorilla is reading
	if fc.wholeMessageBuffered() {
		t.Fatal("whole while a frame is half handed on")
	}
}
