package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// frameConn sits between a gorilla/websocket connection and its network
// connection (TCP, or TLS over TCP) so that an idle socket needs no
// goroutine (see pump). It hands gorilla the bytes of one WebSocket frame at
// a time, never beyond the frame's end, so that once gorilla has returned a
// message nothing of the socket is left in gorilla's own buffer: whether
// more is waiting is then a question for this connection's buffer and the
// network alone. It answers pings and takes pongs itself (gorilla would
// otherwise wait for a data frame after one, holding a goroutine), and
// passes everything else on for gorilla to check, close frames and
// malformed control frames included.
//
// Its buffer is taken from a pool when bytes arrive and given back once
// they are all handed on, so an idle socket holds none.
type frameConn struct {
	net.Conn
	// masked: frames from the peer carry a mask (this is the server side).
	masked bool
	// handshake: the peer's HTTP response comes first (the client side):
	// it is handed on only up to its blank line, so that frames the peer
	// sent right after it stay here.
	handshake bool
	// status is the start of the handshake's response, to tell a 101
	// (frames follow) from a refusal (a body follows, not frames).
	status []byte
	// crlf counts the bytes of "\r\n\r\n" matched at the end of what was
	// handed on during the handshake.
	crlf int
	// passThrough: not frames (a refused handshake's body).
	passThrough bool

	buf  *[frameBufferSize]byte
	r, w int
	// remaining is how much of the current frame is not yet handed on.
	remaining uint64

	// lastRead is when bytes last arrived (Unix nanoseconds): the session's
	// pinger ends a socket silent for longer than the pong wait.
	lastRead atomic.Int64
	// onPing answers a ping; set once the WebSocket connection exists.
	onPing func(payload []byte)
	// pump, if any, is told when the connection is closed.
	pump atomic.Pointer[pump]
	// deadline is the read deadline last set, to set it only on change.
	deadline time.Time

	// The write side: while corked, writes gather in wbuf and go out
	// together when uncorked (see cork.go).
	wmu    sync.Mutex
	corked bool
	wbuf   *[]byte
}

// frameBufferSize holds a full control frame (14 + 125 bytes) many times
// over, and the small frames a read usually brings.
const frameBufferSize = 4096

var frameBuffers = sync.Pool{New: func() any { return new([frameBufferSize]byte) }}

// WebSocket opcodes and header bits (RFC 6455, section 5.2).
const (
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA

	maxControlPayload = 125
)

func newFrameConn(c net.Conn, masked, handshake bool) *frameConn {
	fc := &frameConn{Conn: c, masked: masked, handshake: handshake}
	fc.lastRead.Store(time.Now().UnixNano())
	return fc
}

// preload puts bytes read before the connection was wrapped (the HTTP
// server's buffer after the handshake) in front of the network's. A client
// sends nothing before the handshake's answer; one that sent more than a
// buffer's worth is refused.
func (fc *frameConn) preload(b []byte) error {
	if len(b) > frameBufferSize {
		return errors.New("the client sent frames before the handshake was answered")
	}
	fc.take()
	fc.w = copy(fc.buf[:], b)
	fc.giveBack()
	return nil
}

// Read hands on the bytes of the current frame, or of the handshake.
func (fc *frameConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if fc.passThrough {
		if fc.r < fc.w {
			return fc.deliver(p, len(p)), nil
		}
		return fc.Conn.Read(p)
	}
	if fc.handshake {
		return fc.readHandshake(p)
	}
	for fc.remaining == 0 {
		h, err := fc.header(true)
		if err != nil {
			return 0, err
		}
		if !h.ours(fc.masked) {
			fc.remaining = h.size()
			break
		}
		if err := fc.control(h); err != nil {
			return 0, err
		}
	}
	if fc.r == fc.w {
		// Nothing buffered: read the frame's payload straight into p.
		n := int(min(uint64(len(p)), fc.remaining)) //nolint:gosec // at most len(p)
		n, err := fc.Conn.Read(p[:n])
		if n > 0 {
			fc.arrived()
			fc.remaining -= uint64(n) //nolint:gosec // n > 0
		}
		return n, err
	}
	n := fc.deliver(p, int(min(uint64(len(p)), fc.remaining))) //nolint:gosec // at most len(p)
	fc.remaining -= uint64(n)                                  //nolint:gosec // n >= 0
	return n, nil
}

// deliver copies up to max buffered bytes into p.
func (fc *frameConn) deliver(p []byte, limit int) int {
	n := copy(p[:limit], fc.buf[fc.r:fc.w])
	fc.r += n
	fc.giveBack()
	return n
}

// readHandshake hands on the HTTP response up to its blank line; after a
// 101 the frames begin, after anything else the body, passed on as it is.
func (fc *frameConn) readHandshake(p []byte) (int, error) {
	if fc.r == fc.w {
		if err := fc.fill(); err != nil {
			return 0, err
		}
	}
	const end = "\r\n\r\n"
	n := 0
	for fc.r+n < fc.w && n < len(p) && fc.crlf < len(end) {
		switch fc.buf[fc.r+n] {
		case end[fc.crlf]:
			fc.crlf++
		case '\r':
			fc.crlf = 1
		default:
			fc.crlf = 0
		}
		n++
	}
	if len(fc.status) < 12 {
		fc.status = append(fc.status, fc.buf[fc.r:fc.r+min(n, 12-len(fc.status))]...)
	}
	n = fc.deliver(p, n)
	if fc.crlf == len(end) {
		fc.handshake = false
		fc.passThrough = !bytes.HasPrefix(fc.status, []byte("HTTP/1.1 101"))
	}
	return n, nil
}

// frameHeader is a frame's first bytes, decoded.
type frameHeader struct {
	fin, masked bool
	rsv, opcode byte
	length      int    // the header's own length
	payload     uint64 // the payload's
}

func (h frameHeader) size() uint64 { return uint64(h.length) + h.payload } //nolint:gosec // a header is at most 14 bytes

// ours reports whether the frame is a well-formed ping or pong, which this
// connection answers or takes itself; every other frame goes to gorilla.
func (h frameHeader) ours(masked bool) bool {
	return (h.opcode == opPing || h.opcode == opPong) && h.fin && h.rsv == 0 && h.masked == masked && h.payload <= maxControlPayload
}

// header decodes the header of the frame at the front of the buffer,
// reading until it is whole if wait, and reports errNothingBuffered
// otherwise when the buffer is empty.
func (fc *frameConn) header(wait bool) (frameHeader, error) {
	for {
		if h, ok := decodeHeader(fc.buf, fc.r, fc.w); ok {
			return h, nil
		}
		if !wait && fc.r == fc.w {
			return frameHeader{}, errNothingBuffered
		}
		if err := fc.fill(); err != nil {
			return frameHeader{}, err
		}
	}
}

// decodeHeader decodes the frame header at buf[r:w]; false: it is not all
// there yet.
func decodeHeader(buf *[frameBufferSize]byte, r, w int) (frameHeader, bool) {
	if buf == nil || w-r < 2 {
		return frameHeader{}, false
	}
	b := buf[r:w]
	h := frameHeader{fin: b[0]&0x80 != 0, rsv: b[0] & 0x70, opcode: b[0] & 0x0F, masked: b[1]&0x80 != 0, length: 2}
	switch l := b[1] & 0x7F; l {
	case 126:
		h.length += 2
	case 127:
		h.length += 8
	default:
		h.payload = uint64(l)
	}
	if h.masked {
		h.length += 4
	}
	if len(b) < h.length {
		return frameHeader{}, false
	}
	switch b[1] & 0x7F {
	case 126:
		h.payload = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		h.payload = binary.BigEndian.Uint64(b[2:10])
	}
	return h, true
}

var errNothingBuffered = errors.New("nothing buffered")

// control reads the whole of a ping or pong at the front of the buffer and
// answers a ping.
func (fc *frameConn) control(h frameHeader) error {
	for uint64(fc.w-fc.r) < h.size() { //nolint:gosec // w >= r
		if err := fc.fill(); err != nil {
			return err
		}
	}
	frame := fc.buf[fc.r : fc.r+int(h.size())] //nolint:gosec // at most 139 bytes
	if h.opcode == opPing && fc.onPing != nil {
		payload := bytes.Clone(frame[h.length:])
		if h.masked {
			key := frame[h.length-4 : h.length]
			for i := range payload {
				payload[i] ^= key[i%4]
			}
		}
		fc.onPing(payload)
	}
	fc.r += int(h.size()) //nolint:gosec // as above
	fc.giveBack()
	return nil
}

// nextIsMessage takes the pings and pongs at the front of the buffer and
// reports whether a frame for gorilla follows (what it has of it is
// buffered). false: nothing is buffered.
func (fc *frameConn) nextIsMessage() (bool, error) {
	if fc.handshake || fc.passThrough || fc.remaining > 0 {
		return true, nil
	}
	for {
		h, err := fc.header(false)
		if errors.Is(err, errNothingBuffered) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !h.ours(fc.masked) {
			return true, nil
		}
		if err := fc.control(h); err != nil {
			return false, err
		}
	}
}

// fill reads what the network has into the buffer, waiting for at least a
// byte.
func (fc *frameConn) fill() error {
	fc.take()
	if fc.w == frameBufferSize {
		fc.compact()
	}
	n, err := fc.Conn.Read(fc.buf[fc.w:])
	if n > 0 {
		fc.w += n
		fc.arrived()
		return nil
	}
	fc.giveBack()
	if err == nil {
		err = errors.New("a read returned nothing")
	}
	return err
}

// awaitBytes waits until the network has bytes for the buffer, at most
// until deadline (zero: no bound). It reports a timeout as ok=false with no
// error: nothing is lost, the connection reads on as before.
func (fc *frameConn) awaitBytes(deadline time.Time) (ok bool, err error) {
	if fc.r < fc.w {
		return true, nil
	}
	if err := fc.setReadDeadline(deadline); err != nil {
		return false, err
	}
	err = fc.fill()
	if derr := fc.setReadDeadline(time.Time{}); err == nil && derr != nil {
		err = derr
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, nil
	}
	return err == nil, err
}

func (fc *frameConn) setReadDeadline(t time.Time) error {
	if t.Equal(fc.deadline) {
		return nil
	}
	fc.deadline = t
	return fc.Conn.SetReadDeadline(t)
}

// SetReadDeadline and SetDeadline go through the remembered deadline, so
// that awaitBytes sets it only when it changes.
func (fc *frameConn) SetReadDeadline(t time.Time) error { return fc.setReadDeadline(t) }

func (fc *frameConn) SetDeadline(t time.Time) error {
	fc.deadline = t
	return fc.Conn.SetDeadline(t)
}

func (fc *frameConn) arrived() { fc.lastRead.Store(time.Now().UnixNano()) }

// silentFor is how long ago bytes last arrived.
func (fc *frameConn) silentFor(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, fc.lastRead.Load()))
}

func (fc *frameConn) take() {
	if fc.buf == nil {
		fc.buf = frameBuffers.Get().(*[frameBufferSize]byte) //nolint:forcetypeassert // the pool holds nothing else
		fc.r, fc.w = 0, 0
	}
}

func (fc *frameConn) compact() {
	fc.w = copy(fc.buf[:], fc.buf[fc.r:fc.w])
	fc.r = 0
}

// giveBack returns the buffer to the pool once everything in it is handed on.
func (fc *frameConn) giveBack() {
	if fc.buf != nil && fc.r == fc.w {
		frameBuffers.Put(fc.buf)
		fc.buf, fc.r, fc.w = nil, 0, 0
	}
}

// Close closes the network connection and tells the pump reading it, which
// may be waiting for readiness with no goroutine to see the close.
func (fc *frameConn) Close() error {
	err := fc.Conn.Close()
	if p := fc.pump.Load(); p != nil {
		p.closed()
	}
	return err
}
