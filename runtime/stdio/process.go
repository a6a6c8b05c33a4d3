package stdio

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"tether.dev/tether/runtime/conversation"
)

// program is a started agent program: on this machine (local), or started
// by a spawner in the agent's own container (remote).
type program interface {
	// stdin is the program's standard input; closing it closes the input.
	stdin() io.WriteCloser
	// stdout is the program's standard output, ending after its last line.
	stdout() io.Reader
	// signal asks the program to stop (SIGTERM), or makes it (SIGKILL).
	signal(kill bool)
	// exited is closed once the program has exited and its output is all
	// read; exitErr then says how it exited.
	exited() <-chan struct{}
	exitErr() error
	// stderrTail is the end of what the program wrote to standard error.
	stderrTail() string
	// release frees what is left once the program has exited.
	release()
}

// process is a conversation's program and the reader of its lines.
type process struct {
	prog  program
	lines *bufio.Scanner
}

func newProcess(prog program) *process {
	lines := bufio.NewScanner(prog.stdout())
	lines.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	return &process{prog: prog, lines: lines}
}

// stop closes the program's input, asks it to stop, and kills it after
// grace. Its output is drained meanwhile, so a program writing as it
// stops does not block its own exit.
func (p *process) stop(grace time.Duration) {
	go func() { _, _ = io.Copy(io.Discard, p.prog.stdout()) }()
	_ = p.prog.stdin().Close()
	p.prog.signal(false)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.prog.exited():
	case <-t.C:
		p.prog.signal(true)
		t.Reset(grace)
		select {
		case <-p.prog.exited():
		case <-t.C:
		}
	}
	// For a program on a spawner that stopped answering, releasing it
	// closes the connection, which ends it.
	p.prog.release()
	<-p.prog.exited()
}

// exited describes a program that stopped answering. A program whose
// spawner went away (the agent's container stopped) was lost, not failed:
// the error wraps conversation.ErrAgentLost.
func (p *process) exited(cause error) error {
	msg := "the agent process exited"
	lost := false
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-p.prog.exited():
		if err := p.prog.exitErr(); err != nil {
			msg += " (" + err.Error() + ")"
			lost = errors.Is(err, errSpawnerLost)
		}
	case <-t.C:
		msg = "the agent process stopped answering"
	}
	if cause != nil && !errors.Is(cause, io.EOF) {
		msg += fmt.Sprintf(" (%v)", cause)
	}
	if tail := strings.TrimSpace(p.prog.stderrTail()); tail != "" {
		msg += "; its last error output: " + tail
	}
	if lost {
		return fmt.Errorf("%w: %s", conversation.ErrAgentLost, msg)
	}
	return errors.New(msg)
}

// localProgram is a program started here, in its own process group.
type localProgram struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *os.File
	tail    *tailBuffer
	exit    chan struct{}
	waitErr error
}

// startLocal starts command with args and env (the whole environment);
// what it writes to standard error goes to stderr and, its end, to the
// program's stderrTail.
func startLocal(command string, args, env []string, stderr io.Writer) (*localProgram, error) {
	cmd := exec.CommandContext(context.Background(), command, args...) //nolint:gosec // the Agent's configured program; stopped by signal
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Our own pipe, not StdoutPipe: Wait closes StdoutPipe's read end when
	// the process exits, racing the reader; with this one the reader sees
	// the process's last lines and then EOF.
	out, outWriter, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = outWriter
	tail := &tailBuffer{max: 2048}
	cmd.Stderr = tail
	if stderr != nil {
		cmd.Stderr = io.MultiWriter(tail, stderr)
	}
	err = cmd.Start()
	_ = outWriter.Close() // the child has its copy
	if err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("starting the agent %s: %w", command, err)
	}
	p := &localProgram{cmd: cmd, in: in, out: out, tail: tail, exit: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exit)
	}()
	return p, nil
}

func (p *localProgram) stdin() io.WriteCloser   { return p.in }
func (p *localProgram) stdout() io.Reader       { return p.out }
func (p *localProgram) exited() <-chan struct{} { return p.exit }
func (p *localProgram) stderrTail() string      { return p.tail.String() }
func (p *localProgram) release()                { _ = p.out.Close() }

func (p *localProgram) exitErr() error {
	<-p.exit
	return p.waitErr
}

// signal signals the program's whole process group, so what it started
// stops with it.
func (p *localProgram) signal(kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}
