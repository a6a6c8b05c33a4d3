package gateway

import (
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// quietAfter is how long a pump waits on a socket that went quiet before it
// gives up its goroutine and waits for readiness instead: a socket in the
// middle of a conversation keeps its goroutine, an idle one holds none.
const quietAfter = 50 * time.Millisecond

// pump reads one socket's messages and hands them to handle, without a
// goroutine while the socket is idle: once nothing is buffered anywhere
// (gorilla's buffer is empty by frameConn's design; frameConn's own is
// checked; TLS's is drained by a read that timed out) and nothing arrives
// for quietAfter, it asks the readiness poller to run it again when the
// socket is readable or closed, and returns. Without a poller (not Linux,
// or a connection with no descriptor) it keeps its goroutine, blocked in
// the read, as a plain reader would.
type pump struct {
	fc *frameConn
	ws *websocket.Conn
	// handle takes a message; false stops the pump.
	handle func(kind int, data []byte) bool
	// done runs once when the pump stops: err is why, nil when handle
	// stopped it.
	done func(err error)

	poller *poller
	raw    syscall.RawConn
	reg    registration
	state  atomic.Int32
}

const (
	pumpRunning int32 = iota
	pumpWaiting       // on the poller, no goroutine
	pumpDone
)

// startPump starts reading ws, whose connection is a frameConn.
func startPump(ws *websocket.Conn, handle func(kind int, data []byte) bool, done func(err error)) {
	fc, ok := ws.NetConn().(*frameConn)
	if !ok {
		// Not wrapped (never the case for the gateway's own sockets): a
		// plain reader.
		go func() {
			for {
				kind, data, err := ws.ReadMessage()
				if err != nil {
					done(err)
					return
				}
				if !handle(kind, data) {
					done(nil)
					return
				}
			}
		}()
		return
	}
	p := &pump{fc: fc, ws: ws, handle: handle, done: done}
	if raw := rawConnOf(fc.Conn); raw != nil {
		p.poller, p.raw = sharedPoller(), raw
	}
	fc.pump.Store(p)
	go p.run()
}

// rawConnOf is the descriptor under c (a TCP connection, or TLS over one).
func rawConnOf(c net.Conn) syscall.RawConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// run reads messages until the socket is quiet or fails.
func (p *pump) run() {
	for {
		more, err := p.fc.nextIsMessage()
		if err != nil {
			p.finish(err)
			return
		}
		if !more {
			var deadline time.Time // no poller: wait in the read
			if p.poller != nil {
				deadline = time.Now().Add(quietAfter)
			}
			arrived, err := p.fc.awaitBytes(deadline)
			switch {
			case err != nil:
				p.finish(err)
				return
			case !arrived && p.wait():
				return // the poller runs it again
			}
			continue
		}
		kind, data, err := p.ws.ReadMessage()
		if err != nil {
			p.finish(err)
			return
		}
		if !p.handle(kind, data) {
			p.finish(nil)
			return
		}
	}
}

// wait hands the socket to the poller; false: it could not (the
// connection is closed), and the caller reads on to see why.
func (p *pump) wait() bool {
	if !p.state.CompareAndSwap(pumpRunning, pumpWaiting) {
		return false
	}
	if err := p.poller.arm(p.raw, &p.reg, p.wake); err != nil {
		// Closed meanwhile; closed() may already have taken it back.
		return !p.state.CompareAndSwap(pumpWaiting, pumpRunning)
	}
	return true
}

// wake runs the pump again: the socket is readable, or closed.
func (p *pump) wake() {
	if p.state.CompareAndSwap(pumpWaiting, pumpRunning) {
		p.run()
	}
}

// closed is frameConn.Close's: a waiting pump has no goroutine to see the
// close, so one is started to read the error and finish.
func (p *pump) closed() {
	if p.state.CompareAndSwap(pumpWaiting, pumpRunning) {
		p.poller.forget(&p.reg)
		go p.run()
	}
}

func (p *pump) finish(err error) {
	p.state.Store(pumpDone)
	if p.poller != nil {
		p.poller.forget(&p.reg)
	}
	if err != nil && errors.Is(err, errNothingBuffered) {
		err = nil
	}
	p.done(err)
}
