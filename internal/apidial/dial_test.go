package apidial

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

var (
	refused  = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	timedOut = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ETIMEDOUT)}
)

// script answers each attempt with the next of its errors (nil: a
// connection), repeating the last one; it counts the attempts.
type script struct {
	errs     []error
	attempts int
}

func (s *script) dial(context.Context, string, string) (net.Conn, error) {
	err := s.errs[min(s.attempts, len(s.errs)-1)]
	s.attempts++
	if err != nil {
		return nil, err
	}
	client, server := net.Pipe()
	_ = server.Close()
	return client, nil
}

func TestDialContext(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		errs []error
		// patience of the dialer; its interval is 1 ms.
		patience time.Duration
		want     error
		// attempts, or at least attempts when atLeast.
		attempts int
		atLeast  bool
	}{
		{name: "connects at once", errs: []error{nil}, attempts: 1},
		{name: "refused twice, then listening", errs: []error{refused, refused, nil}, attempts: 3},
		{name: "another failure is not dialled again", errs: []error{timedOut, nil}, want: timedOut, attempts: 1},
		{name: "refused past its patience", errs: []error{refused}, patience: 50 * time.Millisecond, want: refused, attempts: 5, atLeast: true},
		{name: "refused, its request given up", ctx: cancelled, errs: []error{refused, nil}, want: refused, attempts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			s := &script{errs: tc.errs}
			d := &Dialer{Interval: time.Millisecond, Patience: tc.patience, Dial: s.dial}
			conn, err := d.DialContext(ctx, "tcp", "api:443")
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if (conn != nil) != (tc.want == nil) {
				t.Fatalf("connection %v with error %v", conn, err)
			}
			if conn != nil {
				_ = conn.Close()
			}
			if s.attempts != tc.attempts && (!tc.atLeast || s.attempts < tc.attempts) {
				t.Fatalf("%d attempts, want %d", s.attempts, tc.attempts)
			}
		})
	}
}

// TestWaitsForTheServer dials a loopback port that starts listening only
// after the first attempts were refused, as an API server that restarts.
func TestWaitsForTheServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var attempts int
	listening := make(chan net.Listener, 1)
	d := &Dialer{Interval: 5 * time.Millisecond, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		attempts++
		if attempts == 3 { // the server is back
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Errorf("listening again on %s: %v", addr, err)
			} else {
				listening <- l
			}
		}
		return (&net.Dialer{}).DialContext(ctx, network, address)
	}}
	conn, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dialling %s: %v", addr, err)
	}
	_ = conn.Close()
	_ = (<-listening).Close()
	if attempts != 3 {
		t.Fatalf("connected at attempt %d, want 3 (two refused)", attempts)
	}
}
