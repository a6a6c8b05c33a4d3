// Package testredis runs a real redis-server on a loopback port for tests,
// with its data in a temporary directory, and can stop and restart it on the
// same port to play a store that goes down and comes back.
package testredis

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a redis-server this test started.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	// Password, when set, is required of clients (requirepass).
	Password string
	dir      string
	port     int
	cmd      *exec.Cmd
	tb       testing.TB
	extra    []string // more arguments (cluster or replica settings)
	// sentinel runs it as a Sentinel with sentinelConf as its first config.
	sentinel     bool
	sentinelConf string
}

// Start runs redis-server (from Debian's redis-server package, which
// hack/install-packages.sh installs) and stops it when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWithPassword(tb, "")
}

// StartWithPassword is Start with clients required to authenticate.
func StartWithPassword(tb testing.TB, password string) *Server {
	tb.Helper()
	return startServer(tb, password)
}

// startServer starts a server with extra arguments of its own.
func startServer(tb testing.TB, password string, extra ...string) *Server {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatal("redis-server is not installed; run hack/install-packages.sh")
	}
	s := &Server{Password: password, dir: tb.TempDir(), tb: tb, extra: extra}
	s.port = freePort(tb)
	s.Addr = fmt.Sprintf("127.0.0.1:%d", s.port)
	s.start()
	tb.Cleanup(s.Stop)
	return s
}

// freePort is a loopback port the kernel had free.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

func (s *Server) start() {
	s.tb.Helper()
	// appendfsync always: a restarted server has every acknowledged write.
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port), "--dir", s.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "yes",
		"--logfile", filepath.Join(s.dir, "redis.log")}
	if s.sentinel {
		// A sentinel keeps its state in a config file it rewrites.
		conf := filepath.Join(s.dir, "sentinel.conf")
		if _, err := os.Stat(conf); err != nil {
			if err := os.WriteFile(conf, []byte(s.sentinelConf), 0o600); err != nil {
				s.tb.Fatal(err)
			}
		}
		args = []string{conf, "--sentinel", "--bind", "127.0.0.1", "--port", strconv.Itoa(s.port), "--dir", s.dir,
			"--protected-mode", "yes", "--logfile", filepath.Join(s.dir, "redis.log")}
	}
	if s.Password != "" {
		args = append(args, "--requirepass", s.Password)
	}
	args = append(args, s.extra...)
	s.cmd = exec.CommandContext(context.Background(), "redis-server", args...) //nolint:gosec // fixed program, test-chosen args
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("starting redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := (&net.Dialer{Timeout: 100 * time.Millisecond}).DialContext(context.Background(), "tcp", s.Addr)
		if err == nil {
			_, _ = conn.Write([]byte("PING\r\n"))
			buf := make([]byte, 64)
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := conn.Read(buf)
			_ = conn.Close()
			// -NOAUTH is a live server that wants a password.
			if reply := string(buf[:n]); reply == "+PONG\r\n" || strings.HasPrefix(reply, "-NOAUTH") {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.tb.Fatalf("redis-server did not answer on %s: %v\n%s", s.Addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the server down (SIGTERM, then SIGKILL after 10 s). Safe to
// call twice.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	cmd := s.cmd
	s.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Kill ends the server at once (SIGKILL), as a crash would: what it had
// not replicated is lost to a failover. Safe to call twice.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	cmd := s.cmd
	s.cmd = nil
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// Restart starts the server again on the same port with the same data.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.start()
}
