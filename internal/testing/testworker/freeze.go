package testworker

import (
	"io"
	"net"
	"net/http"
	"sync"

	"k8s.io/client-go/rest"
)

// freezer stands for SIGSTOP on a runtime that shares the test's process:
// while it is frozen, every byte the runtime would send or receive (API
// requests, its watch streams, its sockets) waits, so nothing it does is
// seen outside until it is thawed, as with a stopped process. Its timers
// still run inside; what they lead to stays inside too.
type freezer struct {
	mu     sync.Mutex
	thawed chan struct{} // nil while running
}

// wait blocks while frozen.
func (f *freezer) wait() {
	f.mu.Lock()
	ch := f.thawed
	f.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.thawed == nil {
		f.thawed = make(chan struct{})
	}
}

func (f *freezer) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.thawed != nil {
		close(f.thawed)
		f.thawed = nil
	}
}

// config returns cfg whose requests and responses wait while frozen.
func (f *freezer) config(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			f.wait()
			resp, err := rt.RoundTrip(r)
			if resp != nil && resp.Body != nil {
				resp.Body = &frozenBody{ReadCloser: resp.Body, f: f}
			}
			return resp, err
		})
	})
	return cfg
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (fn roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return fn(r) }

// frozenBody holds back a response (a watch stream's events) while frozen.
type frozenBody struct {
	io.ReadCloser
	f *freezer
}

func (b *frozenBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.f.wait()
	return n, err
}

// listener returns l whose connections wait while frozen.
func (f *freezer) listener(l net.Listener) net.Listener { return &frozenListener{Listener: l, f: f} }

type frozenListener struct {
	net.Listener
	f *freezer
}

func (l *frozenListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.f.wait()
	return &frozenConn{Conn: c, f: l.f}, nil
}

type frozenConn struct {
	net.Conn
	f *freezer
}

func (c *frozenConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.f.wait()
	return n, err
}

func (c *frozenConn) Write(p []byte) (int, error) {
	c.f.wait()
	return c.Conn.Write(p)
}
