// Package stdio runs agents written in any language: one process per
// conversation, speaking JSON lines over its standard input and output.
// docs/agents.md describes the contract.
//
// A new process first gets {"type":"history",...}: the conversation's
// events before its first turn (bounded), so an agent started on a new pod
// rebuilds its context. The runtime writes {"type":"turn",...} to start a
// turn and {"type":"answer",...} to answer a question; the agent writes
// send, delta, ask, step (a journaled step: the runtime answers with the
// recorded result, or step_run, then records what the agent's step_done
// says), checkpoint, and one of done, finish or fail to end the turn. A
// process that exits, or writes a line that is not one of these, fails its
// conversation with a message saying so; it never takes the runtime down.
package stdio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
)

// MaxLineBytes bounds one line an agent writes.
const MaxLineBytes = 1 << 20

// Handler starts Command (with Args) once per conversation and drives it.
type Handler struct {
	Command string
	Args    []string
	// Env is added to the process's environment.
	Env []string
	// Spawner, when set, is the Unix socket of a Spawner in the agent's
	// own container: programs are started there (Command, Args and Env
	// are the spawner's then), not in the runtime's container.
	Spawner string

	mu    sync.Mutex
	procs map[eventlog.Key]*process
}

var (
	_ conversation.Handler   = (*Handler)(nil)
	_ conversation.Forgetter = (*Handler)(nil)
)

// Lines the runtime writes.
type toAgent struct {
	Type         string `json:"type"`
	Conversation string `json:"conversation,omitempty"`
	Seq          int64  `json:"seq,omitempty"`
	Input        string `json:"input,omitempty"`
	PromptID     string `json:"promptId,omitempty"`
	Text         string `json:"text,omitempty"`
	// Decision and Args of the answer to a review.
	Decision string          `json:"decision,omitempty"`
	Args     json.RawMessage `json:"args,omitempty"`
	// Name, Key and Result of a step_run or step_result; Replayed says
	// the result was recorded before (the step did not run now).
	Name     string          `json:"name,omitempty"`
	Key      string          `json:"key,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Replayed bool            `json:"replayed,omitempty"`
	// Events and Complete of a history line.
	Events   []historyEvent `json:"events,omitempty"`
	Complete *bool          `json:"complete,omitempty"`
}

// historyEvent is one event of a history line.
type historyEvent struct {
	Seq  int64           `json:"seq"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data,omitempty"`
}

// Lines an agent writes.
type fromAgent struct {
	Type    string          `json:"type"`
	Text    string          `json:"text,omitempty"`
	ID      string          `json:"id,omitempty"`
	Options []string        `json:"options,omitempty"`
	State   json.RawMessage `json:"state,omitempty"`
	Message string          `json:"message,omitempty"`
	// Name of a step or step_done, Shown (a client-safe summary) of a
	// step shown to clients, and Result of a step_done.
	Name  string `json:"name,omitempty"`
	Shown string `json:"shown,omitempty"`
	// Review of an ask that puts an action before the human.
	Review *protocol.Review `json:"review,omitempty"`
	Result json.RawMessage  `json:"result,omitempty"`
}

// maxHistoryBytes bounds a history line's events; older ones are left out
// (complete is then false).
const maxHistoryBytes = MaxLineBytes / 2

// HandleTurn implements conversation.Handler. A turn that ends in an
// error (the store failing under it included) lets go of the process: it is
// in the middle of the turn, and the turn runs again, in replay, in a fresh
// one.
func (h *Handler) HandleTurn(ctx context.Context, t *conversation.Turn) (err error) {
	p, fresh, err := h.process(ctx, t.Conversation)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			h.Forget(t.Conversation)
		}
	}()
	fail := func(err error) error {
		h.Forget(t.Conversation)
		return err
	}
	// A cancelled turn (an interrupting message, or the owner letting go)
	// stops the process, which is blocked on its own work or its input.
	stop := context.AfterFunc(ctx, func() { h.Forget(t.Conversation) })
	defer stop()
	if fresh {
		if err := h.sendHistory(ctx, p, t); err != nil {
			return fail(err)
		}
	}
	if err := p.write(toAgent{Type: "turn", Conversation: t.Conversation.String(), Seq: t.Seq, Input: t.Input}); err != nil {
		return fail(p.exited(err))
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !p.lines.Scan() {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := p.lines.Err()
			if errors.Is(err, bufio.ErrTooLong) {
				return fail(fmt.Errorf("the agent wrote a line over %d bytes", MaxLineBytes))
			}
			return fail(p.exited(err))
		}
		var line fromAgent
		if err := json.Unmarshal(p.lines.Bytes(), &line); err != nil {
			return fail(fmt.Errorf("the agent wrote a line that is not JSON: %.80q", p.lines.Text()))
		}
		switch line.Type {
		case "send":
			if err := t.Send(ctx, line.Text); err != nil {
				return err
			}
		case "delta":
			if err := t.Delta(line.Text); err != nil {
				return err
			}
		case "checkpoint":
			if err := t.Checkpoint(ctx, line.State); err != nil {
				return err
			}
		case "ask":
			reply := toAgent{Type: "answer", PromptID: line.ID}
			if line.Review != nil {
				d, err := t.Review(ctx, line.ID, line.Text, *line.Review)
				if err != nil {
					return err
				}
				reply.Decision, reply.Args, reply.Text = d.Decision, d.Args, d.Text
			} else {
				answer, err := t.Ask(ctx, line.ID, line.Text, line.Options...)
				if err != nil {
					return err
				}
				reply.Text = answer
			}
			if err := p.write(reply); err != nil {
				return fail(p.exited(err))
			}
		case "step":
			if err := h.step(ctx, p, t, line.Name, line.Shown); err != nil {
				return fail(err)
			}
		case "done":
			return nil
		case "finish":
			return conversation.ErrFinish
		case "fail":
			return fmt.Errorf("the agent reported: %s", line.Message)
		default:
			return fail(fmt.Errorf("the agent wrote an unknown line type %.40q", line.Type))
		}
	}
}

// sendHistory gives a new process the conversation so far: the newest
// events before this turn that fit in half a line.
func (h *Handler) sendHistory(ctx context.Context, p *process, t *conversation.Turn) error {
	events, complete, err := t.History(ctx)
	if err != nil {
		return err
	}
	out := make([]historyEvent, 0, len(events))
	size := 0
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		if size += len(e.Data) + len(e.Type) + 32; size > maxHistoryBytes {
			complete = false
			break
		}
		out = append(out, historyEvent{Seq: e.Seq, Type: e.Type, Data: e.Data})
	}
	slices.Reverse(out)
	if err := p.write(toAgent{Type: "history", Conversation: t.Conversation.String(), Events: out, Complete: &complete}); err != nil {
		return p.exited(err)
	}
	return nil
}

// step runs a journaled step for the agent: the recorded result if there is
// one, or else the agent runs it (step_run) and says what came of it
// (step_done, or fail); either way the agent gets step_result.
func (h *Handler) step(ctx context.Context, p *process, t *conversation.Turn, name, shown string) error {
	var opts []conversation.StepOption
	if shown != "" {
		opts = append(opts, conversation.Shown(shown))
	}
	replayed := true
	var key string
	result, err := t.Step(ctx, name, func(_ context.Context, k string) (json.RawMessage, error) {
		replayed, key = false, k
		if err := p.write(toAgent{Type: "step_run", Name: name, Key: k}); err != nil {
			return nil, p.exited(err)
		}
		if !p.lines.Scan() {
			return nil, p.exited(p.lines.Err())
		}
		var done fromAgent
		if err := json.Unmarshal(p.lines.Bytes(), &done); err != nil {
			return nil, fmt.Errorf("the agent wrote a line that is not JSON: %.80q", p.lines.Text())
		}
		switch {
		case done.Type == "fail":
			return nil, fmt.Errorf("the agent's step %q failed: %s", name, done.Message)
		case done.Type != "step_done" || done.Name != name:
			return nil, fmt.Errorf("the agent answered step_run %q with %.40q, want step_done", name, done.Type)
		}
		return done.Result, nil
	}, opts...)
	if err != nil {
		return err
	}
	if err := p.write(toAgent{Type: "step_result", Name: name, Key: key, Result: result, Replayed: replayed}); err != nil {
		return p.exited(err)
	}
	return nil
}

// process returns the conversation's process, starting it if needed; fresh
// says it was started now.
func (h *Handler) process(ctx context.Context, key eventlog.Key) (p *process, fresh bool, err error) {
	h.mu.Lock()
	p, ok := h.procs[key]
	h.mu.Unlock()
	if ok {
		return p, false, nil
	}
	var prog program
	if h.Spawner != "" {
		prog, err = startRemote(ctx, h.Spawner, key.String())
	} else {
		env := append(os.Environ(), h.Env...)
		prog, err = startLocal(h.Command, h.Args, append(env, "TETHER_CONVERSATION="+key.String()), nil)
	}
	if err != nil {
		return nil, false, err
	}
	p = newProcess(prog)
	h.mu.Lock()
	if h.procs == nil {
		h.procs = map[eventlog.Key]*process{}
	}
	other, raced := h.procs[key]
	if !raced {
		h.procs[key] = p
	}
	h.mu.Unlock()
	if raced {
		// A conversation's turns run one at a time; this is only for
		// safety.
		p.stop(time.Second)
		return other, false, nil
	}
	return p, true, nil
}

// Forget stops the conversation's process: SIGTERM, then SIGKILL after 5 s.
func (h *Handler) Forget(key eventlog.Key) {
	h.mu.Lock()
	p, ok := h.procs[key]
	delete(h.procs, key)
	h.mu.Unlock()
	if ok {
		p.stop(5 * time.Second)
	}
}

func (p *process) write(m toAgent) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = p.prog.stdin().Write(append(data, '\n'))
	return err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
