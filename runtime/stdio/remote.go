package stdio

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// spawnerDialTimeout bounds how long the runtime waits for the agent
// container's spawner to listen (it may start after the runtime, or be
// restarting).
const spawnerDialTimeout = 30 * time.Second

// errSpawnerLost is a remote program's end when the connection to its
// spawner ended without the spawner saying how the program exited.
var errSpawnerLost = errors.New("the connection to the agent container's spawner ended")

// remoteProgram is a program a Spawner started for this runtime.
type remoteProgram struct {
	conn net.Conn
	wmu  sync.Mutex
	out  *io.PipeReader
	tail *tailBuffer
	exit chan struct{}
	err  error
}

// startRemote asks the spawner listening on socket to start the program
// for conversation.
func startRemote(ctx context.Context, socket, conversation string) (*remoteProgram, error) {
	ctx, cancel := context.WithTimeout(ctx, spawnerDialTimeout)
	defer cancel()
	var d net.Dialer
	var conn net.Conn
	for {
		var err error
		if conn, err = d.DialContext(ctx, "unix", socket); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reaching the agent container's spawner at %s: %w", socket, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	// A spawner that refuses (it runs as many programs as it may) says why
	// and closes: then writing the request fails, and reading tells why.
	_ = writeSpawnRequest(conn, spawnRequest{Conversation: conversation})
	out, outWriter := io.Pipe()
	p := &remoteProgram{conn: conn, out: out, tail: &tailBuffer{max: 2048}, exit: make(chan struct{})}
	go p.read(outWriter)
	return p, nil
}

// read carries the spawner's frames until the program's exit.
func (p *remoteProgram) read(out *io.PipeWriter) {
	defer close(p.exit)
	defer func() { _ = out.Close() }()
	r := bufio.NewReader(p.conn)
	for {
		kind, payload, err := readFrame(r)
		if err != nil {
			// No exit frame: the spawner went away (its container stopped
			// or restarted), not the program on its own.
			p.err = fmt.Errorf("%w: %w", errSpawnerLost, err)
			return
		}
		switch kind {
		case frameStdout:
			// Blocks until the handler reads it: the program's output
			// waits for the runtime, as through a pipe.
			if _, err := out.Write(payload); err != nil {
				p.err = errors.New("the agent's output was no longer read")
				return
			}
		case frameStderr:
			_, _ = p.tail.Write(payload)
		case frameExit:
			if len(payload) > 0 {
				p.err = errors.New(string(payload))
			}
			return
		default:
			p.err = fmt.Errorf("the agent container's spawner sent an unknown frame %q", kind)
			return
		}
	}
}

func (p *remoteProgram) send(kind byte, payload []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return writeFrame(p.conn, kind, payload)
}

func (p *remoteProgram) stdin() io.WriteCloser   { return remoteStdin{p} }
func (p *remoteProgram) stdout() io.Reader       { return p.out }
func (p *remoteProgram) exited() <-chan struct{} { return p.exit }
func (p *remoteProgram) stderrTail() string      { return p.tail.String() }

func (p *remoteProgram) exitErr() error {
	<-p.exit
	return p.err
}

// signal sends the signal to the program; if the spawner cannot be told,
// the connection is closed, which stops the program too.
func (p *remoteProgram) signal(kill bool) {
	kind := frameTerm
	if kill {
		kind = frameKill
	}
	if err := p.send(kind, nil); err != nil {
		_ = p.conn.Close()
	}
}

func (p *remoteProgram) release() {
	_ = p.conn.Close()
	_ = p.out.Close()
}

// remoteStdin writes a remote program's standard input.
type remoteStdin struct{ p *remoteProgram }

func (w remoteStdin) Write(data []byte) (int, error) {
	for chunk := range slices.Chunk(data, spawnChunk) {
		if err := w.p.send(frameStdin, chunk); err != nil {
			return 0, err
		}
	}
	return len(data), nil
}

func (w remoteStdin) Close() error { return w.p.send(frameCloseStdin, nil) }
