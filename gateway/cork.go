package gateway

import "sync"

// Corking: a turn's frames usually reach the gateway together (an ack, the
// user's message, the reply, the turn's end), and each written on its own
// costs a system call and, on the client's side, a wakeup. While the
// owner's connection already holds the next whole message, the frames for
// the client gather in a buffer and go out in one write with the last of
// them. Nothing waits for more to come: a frame whose successor is not
// whole in memory yet is written at once, with everything gathered before
// it, so a cork never outlives the burst that set it.

// corkLimit bounds what gathers before it is written anyway.
const corkLimit = 32 << 10

var corkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, corkLimit); return &b }}

// Write writes p, or gathers it while corked.
func (fc *frameConn) Write(p []byte) (int, error) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	if !fc.corked {
		return fc.Conn.Write(p)
	}
	if fc.wbuf != nil && len(*fc.wbuf)+len(p) > corkLimit {
		if err := fc.flushLocked(); err != nil {
			return 0, err
		}
	}
	if len(p) > corkLimit {
		return fc.Conn.Write(p)
	}
	if fc.wbuf == nil {
		fc.wbuf = corkBuffers.Get().(*[]byte) //nolint:forcetypeassert // the pool holds nothing else
	}
	*fc.wbuf = append(*fc.wbuf, p...)
	return len(p), nil
}

// cork makes writes gather until uncork.
func (fc *frameConn) cork() {
	fc.wmu.Lock()
	fc.corked = true
	fc.wmu.Unlock()
}

// uncork writes what gathered, in one write, and lets writes through again.
func (fc *frameConn) uncork() error {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	fc.corked = false
	return fc.flushLocked()
}

func (fc *frameConn) flushLocked() error {
	if fc.wbuf == nil {
		return nil
	}
	b := fc.wbuf
	fc.wbuf = nil
	_, err := fc.Conn.Write(*b)
	*b = (*b)[:0]
	corkBuffers.Put(b)
	return err
}

// wholeMessageBuffered reports whether this connection's buffer holds the
// whole of the next frame, and that frame is a whole data message (not a
// control frame, not the first of several): reading it then cannot wait on
// the network.
func (fc *frameConn) wholeMessageBuffered() bool {
	if fc.buf == nil || fc.handshake || fc.passThrough || fc.remaining > 0 {
		return false
	}
	b := fc.buf[fc.r:fc.w]
	if len(b) < 2 {
		return false
	}
	fin, opcode := b[0]&0x80 != 0, b[0]&0x0F
	if !fin || (opcode != 0x1 && opcode != 0x2) {
		return false
	}
	size := 2
	payload := uint64(b[1] & 0x7F)
	switch payload {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if b[1]&0x80 != 0 {
		size += 4
	}
	if len(b) < size {
		return false
	}
	switch payload {
	case 126:
		payload = uint64(b[2])<<8 | uint64(b[3])
	case 127:
		return false // 64 KiB or more: never whole in this buffer
	}
	return uint64(len(b)-size) >= payload //nolint:gosec // len(b) >= size
}
