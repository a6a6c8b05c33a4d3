package stdio

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tether.dev/tether/internal/testing/await"
)

// serveSpawner runs s on a Unix socket in a temp dir until the test ends.
func serveSpawner(t *testing.T, s *Spawner) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "spawner.sock")
	serveSpawnerAt(t, s, socket)
	return socket
}

// serveSpawnerAt runs s on socket until stop is called or the test ends,
// as the agent's container does until it stops.
func serveSpawnerAt(t *testing.T, s *Spawner, socket string) (stop func()) {
	t.Helper()
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, l) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Cleanup(stop)
	return stop
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// firstLine reads the program's first line of output.
func firstLine(t *testing.T, p program) string {
	t.Helper()
	line, err := bufio.NewReader(p.stdout()).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the program's output: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestSpawnerCarriesTheProgram(t *testing.T) {
	sh := "/bin/sh"
	socket := serveSpawner(t, &Spawner{Command: sh, Args: []string{"-c", `echo "conv=$TETHER_CONVERSATION secret=${RUNTIME_SECRET:-none}"; read line; echo "got $line"; echo oops >&2; exit 3`},
		Env: []string{"PATH=/usr/bin:/bin"}})
	// What the runtime's process holds must not reach the program.
	t.Setenv("RUNTIME_SECRET", "the runtime's")
	p, err := startRemote(context.Background(), socket, "ns/c1")
	if err != nil {
		t.Fatal(err)
	}
	defer p.release()
	if got := firstLine(t, p); got != "conv=ns/c1 secret=none" {
		t.Fatalf("the program saw %q", got)
	}
	if _, err := p.stdin().Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(p.stdout())
	if got, _ := out.ReadString('\n'); got != "got hello\n" {
		t.Fatalf("the program answered %q", got)
	}
	<-p.exited()
	if err := p.exitErr(); err == nil || err.Error() != "exit status 3" {
		t.Fatalf("exit %v, want exit status 3", err)
	}
	if tail := strings.TrimSpace(p.stderrTail()); tail != "oops" {
		t.Fatalf("stderr %q", tail)
	}
}

// TestSpawnerStopsWhatItsRuntimeLeft: a runtime that goes away (its
// connection closed without a word) leaves no program running; a runtime
// that stops a program has it stopped with its process group.
func TestSpawnerStopsWhatItsRuntimeLeft(t *testing.T) {
	socket := serveSpawner(t, &Spawner{Command: "/bin/sh", Args: []string{"-c", `sleep 1000 & echo "$$ $!"; wait`}, Grace: 200 * time.Millisecond})
	pids := func(p program) []int {
		var out []int
		for f := range strings.FieldsSeq(firstLine(t, p)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, pid)
		}
		return out
	}
	gone := func(what string, pids []int) {
		t.Helper()
		await.Until(t, 5*time.Second, what+": every process gone", func() bool { return !slices.ContainsFunc(pids, alive) })
	}

	p, err := startRemote(context.Background(), socket, "ns/left")
	if err != nil {
		t.Fatal(err)
	}
	left := pids(p)
	_ = p.conn.Close()
	gone("the runtime went away", left)

	q, err := startRemote(context.Background(), socket, "ns/stopped")
	if err != nil {
		t.Fatal(err)
	}
	stopped := pids(q)
	newProcess(q).stop(time.Second)
	gone("the runtime stopped it", stopped)
}

func TestSpawnerBoundsItsPrograms(t *testing.T) {
	socket := serveSpawner(t, &Spawner{Command: "/bin/sh", Args: []string{"-c", "echo up; exec sleep 1000"}, MaxProcesses: 1, Grace: 100 * time.Millisecond})
	p, err := startRemote(context.Background(), socket, "ns/one")
	if err != nil {
		t.Fatal(err)
	}
	if firstLine(t, p) != "up" {
		t.Fatal("the first program did not start")
	}
	q, err := startRemote(context.Background(), socket, "ns/two")
	if err != nil {
		t.Fatal(err)
	}
	<-q.exited()
	if err := q.exitErr(); err == nil || !strings.Contains(err.Error(), "runs 1 agent programs already") {
		t.Fatalf("the second program: %v", err)
	}
	q.release()
	newProcess(p).stop(time.Second)
	// The slot is free again.
	r, err := startRemote(context.Background(), socket, "ns/three")
	if err != nil {
		t.Fatal(err)
	}
	if firstLine(t, r) != "up" {
		t.Fatal("no room after the first program stopped")
	}
	newProcess(r).stop(time.Second)
}

func TestSpawnerRefusesBadRequests(t *testing.T) {
	socket := serveSpawner(t, &Spawner{Command: "/bin/true"})
	for _, tc := range []struct{ name, request, want string }{
		{"not JSON", "hello\n", "does not name a conversation"},
		{"no conversation", "{}\n", "does not name a conversation"},
		{"too long", strings.Repeat("x", 2*maxSpawnRequest), "over 4096 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("unix", socket)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			if _, err := conn.Write([]byte(tc.request)); err != nil {
				t.Fatal(err)
			}
			kind, payload, err := readFrame(conn)
			if err != nil || kind != frameExit || !strings.Contains(string(payload), tc.want) {
				t.Fatalf("got %q %q %v, want an exit frame saying %q", kind, payload, err, tc.want)
			}
		})
	}
}

func TestRemoteWaitsForTheSpawner(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "late.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := startRemote(ctx, socket, "ns/c"); err == nil || !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "spawner") {
		t.Fatalf("no spawner: %v", err)
	}
	if _, err := os.Stat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the socket appeared")
	}
}
