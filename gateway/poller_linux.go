package gateway

import (
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller runs a function when a socket becomes readable (or is hung up or
// closed by its peer): one epoll instance and one goroutine for every idle
// socket of the process, in place of a goroutine blocked in each socket's
// read. It is level-triggered and one-shot: armed again only when its pump
// has read everything and goes back to waiting, and firing at once if bytes
// came in between.
type poller struct {
	epfd    int
	mu      sync.Mutex
	waiting map[uint64]func()
	next    uint64
}

// registration is a socket's entry in the poller: its id, 0 before the
// first arm. Ids are never reused, so an event for a socket since closed
// finds nothing to run.
type registration struct{ id uint64 }

var sharedPoller = sync.OnceValue(func() *poller {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil // pumps keep their goroutines
	}
	p := &poller{epfd: epfd, waiting: map[uint64]func(){}}
	go p.loop()
	return p
})

// arm runs wake once the socket under raw is readable. The descriptor is
// used only inside raw.Control, which holds it open: a closed connection's
// number, perhaps another socket's by now, is never touched.
func (p *poller) arm(raw syscall.RawConn, reg *registration, wake func()) error {
	p.mu.Lock()
	add := reg.id == 0
	if add {
		p.next++
		reg.id = p.next
	}
	p.waiting[reg.id] = wake
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	ev.Fd, ev.Pad = int32(uint32(reg.id)), int32(uint32(reg.id>>32)) //nolint:gosec // the id's halves, as bits
	var ctlErr error
	err := raw.Control(func(fd uintptr) {
		op := unix.EPOLL_CTL_MOD
		if add {
			op = unix.EPOLL_CTL_ADD
		}
		ctlErr = unix.EpollCtl(p.epfd, op, int(fd), &ev) //nolint:gosec // a descriptor fits an int
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		p.forget(reg)
		return err
	}
	return nil
}

// forget drops the socket's pending wake, if any.
func (p *poller) forget(reg *registration) {
	p.mu.Lock()
	delete(p.waiting, reg.id)
	p.mu.Unlock()
}

func (p *poller) loop() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			panic("gateway: waiting for socket readiness: " + err.Error())
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32 //nolint:gosec // the id's halves, as bits
			p.mu.Lock()
			wake := p.waiting[id]
			delete(p.waiting, id)
			p.mu.Unlock()
			if wake != nil {
				go wake()
			}
		}
	}
}
