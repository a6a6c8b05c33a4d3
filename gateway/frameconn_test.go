package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// frame encodes one WebSocket frame; a masked one with a fixed key.
func frame(opcode byte, fin, masked bool, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	var out []byte
	var mask byte
	if masked {
		mask = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, b0, mask|byte(n))
	case n <= 0xFFFF:
		out = append(out, b0, mask|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, b0, mask|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

// chunkedConn reads a fixed stream back in pieces of at most step bytes,
// then reports io.EOF.
type chunkedConn struct {
	net.Conn
	data []byte
	step int
}

func (c *chunkedConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.step)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkedConn) SetReadDeadline(time.Time) error { return nil }
func (c *chunkedConn) SetDeadline(time.Time) error     { return nil }
func (c *chunkedConn) Close() error                    { return nil }

// TestFrameConnHandsOnOneFrameAtATime: whatever pieces the network brings,
// no read crosses the end of a frame, pings and pongs never reach gorilla
// (pings are answered with their unmasked payload), every other frame
// reaches it whole and in order (close frames and malformed control frames
// included, for gorilla to judge), and once the last frame is handed on
// nothing is left buffered.
func TestFrameConnHandsOnOneFrameAtATime(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70000)
	cases := []struct {
		name   string
		masked bool
		frames [][]byte
		// passed are the indexes of the frames gorilla must see.
		passed []int
		pings  []string
	}{
		{
			name: "client frames with pings and pongs between", masked: true,
			frames: [][]byte{
				frame(0x1, true, true, []byte(`{"type":"message"}`)),
				frame(opPing, true, true, []byte("p1")),
				frame(opPong, true, true, nil),
				frame(0x2, true, true, []byte{1, 2, 3}),
				frame(0x1, false, true, []byte("frag-")), // a fragmented message with a ping inside
				frame(opPing, true, true, []byte("p2")),
				frame(0x0, true, true, []byte("ment")),
				frame(0x1, true, true, big),
				frame(opClose, true, true, []byte{0x03, 0xE8}),
			},
			passed: []int{0, 3, 4, 6, 7, 8}, pings: []string{"p1", "p2"},
		},
		{
			name: "owner frames, unmasked", masked: false,
			frames: [][]byte{
				frame(opPing, true, false, []byte("hello")),
				frame(0x1, true, false, bytes.Repeat([]byte("y"), 300)),
				frame(opPong, true, false, []byte("late")),
				frame(0x1, true, false, []byte("{}")),
			},
			passed: []int{1, 3}, pings: []string{"hello"},
		},
		{
			name: "malformed control frames go to gorilla", masked: true,
			frames: [][]byte{
				frame(opPing, true, false, []byte("unmasked")),            // a client's frame must be masked
				frame(opPing, false, true, nil),                           // a control frame cannot be fragmented
				frame(opPong, true, true, bytes.Repeat([]byte("z"), 126)), // nor longer than 125 bytes
				frame(opPing|0x40, true, true, nil),                       // nor have a reserved bit set
			},
			passed: []int{0, 1, 2, 3},
		},
	}
	for _, tc := range cases {
		for _, step := range []int{1, 2, 3, 7, 100, 4096, 1 << 20} {
			t.Run(tc.name, func(t *testing.T) {
				var stream, want []byte
				var bounds []int // where each passed frame ends in what gorilla sees
				for i, f := range tc.frames {
					stream = append(stream, f...)
					if slices.Contains(tc.passed, i) {
						want = append(want, f...)
						bounds = append(bounds, len(want))
					}
				}
				fc := newFrameConn(&chunkedConn{data: stream, step: step}, tc.masked, false)
				var pings []string
				fc.onPing = func(p []byte) { pings = append(pings, string(p)) }
				var got []byte
				buf := make([]byte, 512)
				for {
					n, err := fc.Read(buf)
					start := len(got)
					got = append(got, buf[:n]...)
					for _, b := range bounds {
						if start < b && len(got) > b {
							t.Fatalf("step %d: a read of %d bytes at %d crossed the end of a frame at %d", step, n, start, b)
						}
					}
					if len(got) == len(want) {
						if more, err := fc.nextIsMessage(); more || !errors.Is(err, io.EOF) && err != nil {
							t.Fatalf("step %d: after the last frame, more %v, err %v", step, more, err)
						}
						if fc.buf != nil {
							t.Fatalf("step %d: a buffer is still held", step)
						}
						break
					}
					if err != nil {
						t.Fatalf("step %d: %v after %d of %d bytes", step, err, len(got), len(want))
					}
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("step %d: gorilla would see %d bytes, want %d", step, len(got), len(want))
				}
				if !slices.Equal(pings, tc.pings) {
					t.Fatalf("step %d: pings answered %q, want %q", step, pings, tc.pings)
				}
			})
		}
	}
}

// TestFrameConnStopsAtTheHandshakesEnd: on the client side the owner's
// HTTP answer is handed on only to its blank line, so frames sent right
// after it stay for frameConn; a refusal's body is passed on as it is.
func TestFrameConnStopsAtTheHandshakesEnd(t *testing.T) {
	first := frame(0x1, true, false, []byte(`{"type":"replay_complete"}`))
	cases := []struct {
		name, head string
		rest       []byte
		frames     bool
	}{
		{"switched", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX: a\r\r\n\r\n", first, true},
		{"refused", "HTTP/1.1 409 Conflict\r\nContent-Length: 11\r\n\r\n", []byte("not yours\r\n"), false},
	}
	for _, tc := range cases {
		for _, step := range []int{1, 5, 4096} {
			t.Run(tc.name, func(t *testing.T) {
				fc := newFrameConn(&chunkedConn{data: append([]byte(tc.head), tc.rest...), step: step}, false, true)
				var head []byte
				buf := make([]byte, 4096)
				for len(head) < len(tc.head) {
					n, err := fc.Read(buf)
					if err != nil {
						t.Fatal(err)
					}
					head = append(head, buf[:n]...)
				}
				if string(head) != tc.head {
					t.Fatalf("step %d: handed on %q, want %q", step, head, tc.head)
				}
				rest, err := io.ReadAll(fc)
				if err != nil || !bytes.Equal(rest, tc.rest) {
					t.Fatalf("step %d: then %q (%v), want %q", step, rest, err, tc.rest)
				}
				if fc.passThrough == tc.frames {
					t.Fatalf("step %d: frames %v, want %v", step, !fc.passThrough, tc.frames)
				}
			})
		}
	}
}
