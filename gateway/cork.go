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
	if fc.handshake || fc.passThrough || fc.remaining > 0 {
		return false
	}
	h, ok := decodeHeader(fc.buf, fc.r, fc.w)
	return ok && h.fin && (h.opcode == 0x1 || h.opcode == 0x2) && h.size() <= uint64(fc.w-fc.r) //nolint:gosec // w >= r
}
