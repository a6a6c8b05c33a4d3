package stdio

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
)

// Spawner starts agent programs for a runtime that runs in another
// container of the pod. With spec.agentContainer, the manager runs the
// agent's container as the spawner and the runtime in a container of its
// own: the runtime holds the pod's ServiceAccount token, the agent's
// container has none, so agent code cannot act as the runtime. The runtime
// connects to the spawner's Unix socket (in an emptyDir only those two
// containers mount) once per conversation; the spawner starts the program
// and carries its standard streams, its exit and the runtime's signals
// over that connection. A program whose connection ends is stopped.
type Spawner struct {
	// Command and Args are the agent program.
	Command string
	Args    []string
	// Env is the programs' environment: the agent container's own, which
	// holds no Kubernetes credentials. TETHER_CONVERSATION is added.
	Env []string
	// MaxProcesses bounds the programs running at once (1024 if zero);
	// a connection over it is told so and closed.
	MaxProcesses int
	// Grace is how long a program whose runtime let go of it has between
	// SIGTERM and SIGKILL (5 s if zero).
	Grace time.Duration
}

// Serve accepts runtimes' connections on l until ctx ends, then closes l
// and returns once every program it started has been stopped.
func (s *Spawner) Serve(ctx context.Context, l net.Listener) error {
	limit := s.MaxProcesses
	if limit <= 0 {
		limit = 1024
	}
	slots := make(chan struct{}, limit)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	var err error
	for {
		conn, aerr := l.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				err = aerr
			}
			break
		}
		select {
		case slots <- struct{}{}:
		default:
			_ = writeFrame(conn, frameExit, fmt.Appendf(nil, "the spawner runs %d agent programs already", limit))
			_ = conn.Close()
			continue
		}
		mu.Lock()
		conns[conn] = true
		mu.Unlock()
		wg.Go(func() {
			s.serveConn(conn, sync.OnceFunc(func() { <-slots }))
			mu.Lock()
			delete(conns, conn)
			mu.Unlock()
		})
	}
	// Stopping: the runtimes let go of their programs as they stop; those
	// still connected are stopped once ctx is over.
	mu.Lock()
	for conn := range conns {
		_ = conn.Close()
	}
	mu.Unlock()
	wg.Wait()
	return err
}

// lockedFrames writes frames of one kind to a connection shared by
// several writers; a broken connection is not an error to the writer (the
// program is stopped when the connection's reader sees it).
type lockedFrames struct {
	mu   *sync.Mutex
	conn net.Conn
	kind byte
}

func (f lockedFrames) Write(p []byte) (int, error) {
	for chunk := range slices.Chunk(p, spawnChunk) {
		f.mu.Lock()
		_ = writeFrame(f.conn, f.kind, chunk)
		f.mu.Unlock()
	}
	return len(p), nil
}

// serveConn serves one runtime's connection; free is called once its
// program has exited (before the runtime is told), so the slot is free
// when the runtime learns the program ended.
func (s *Spawner) serveConn(conn net.Conn, free func()) {
	defer free()
	defer func() { _ = conn.Close() }()
	var wmu sync.Mutex
	exit := func(msg string) {
		free()
		wmu.Lock()
		defer wmu.Unlock()
		_ = writeFrame(conn, frameExit, []byte(msg))
	}
	r := bufio.NewReaderSize(conn, maxSpawnRequest)
	req, err := readSpawnRequest(conn, r)
	if err != nil {
		exit(err.Error())
		return
	}
	env := append(slices.Clone(s.Env), "TETHER_CONVERSATION="+req.Conversation)
	prog, err := startLocal(s.Command, s.Args, env, lockedFrames{mu: &wmu, conn: conn, kind: frameStderr})
	if err != nil {
		exit(err.Error())
		return
	}
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		_, _ = prog.out.WriteTo(lockedFrames{mu: &wmu, conn: conn, kind: frameStdout})
		msg := ""
		if err := prog.exitErr(); err != nil {
			msg = err.Error()
		}
		exit(msg)
	}()
	s.follow(r, prog)
	grace := s.Grace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	select {
	case <-prog.exited():
	default:
		prog.signal(false)
		t := time.NewTimer(grace)
		select {
		case <-prog.exited():
		case <-t.C:
			prog.signal(true)
			<-prog.exited()
		}
		t.Stop()
	}
	_ = conn.Close()
	<-pumped
	prog.release()
}

// follow carries the runtime's frames to prog until the connection ends.
func (s *Spawner) follow(r *bufio.Reader, prog *localProgram) {
	for {
		kind, payload, err := readFrame(r)
		if err != nil {
			return
		}
		switch kind {
		case frameStdin:
			if _, err := prog.in.Write(payload); err != nil {
				// The program closed its input or exited; the exit frame
				// tells the runtime.
				continue
			}
		case frameCloseStdin:
			_ = prog.in.Close()
		case frameTerm:
			prog.signal(false)
		case frameKill:
			prog.signal(true)
		default:
			return
		}
	}
}

func readSpawnRequest(conn net.Conn, r *bufio.Reader) (spawnRequest, error) {
	var req spawnRequest
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := r.ReadSlice('\n')
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return req, fmt.Errorf("the spawn request is over %d bytes", maxSpawnRequest)
		}
		return req, fmt.Errorf("reading the spawn request: %w", err)
	}
	if err := json.Unmarshal(line, &req); err != nil || req.Conversation == "" || len(req.Conversation) > 512 {
		return req, errors.New("the spawn request does not name a conversation")
	}
	return req, nil
}
