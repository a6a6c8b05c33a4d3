package conversation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
)

// countingLog counts appends and remembers each one's event types.
type countingLog struct {
	eventlog.Log
	mu      sync.Mutex
	appends [][]string
}

func (l *countingLog) Append(ctx context.Context, k eventlog.Key, epoch int64, events []eventlog.Event) (int64, error) {
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Type)
	}
	l.mu.Lock()
	l.appends = append(l.appends, kinds)
	l.mu.Unlock()
	return l.Log.Append(ctx, k, epoch, events)
}

func (l *countingLog) writes() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.appends)
}

// TestATurnsOutputGoesOutWithItsNextDurablePoint: what an agent sends is
// written with the turn's next durable point, in the same append: an echo
// turn is two writes (the user's message, acknowledged on its own; the
// reply with the turn's end), a message before a question goes with the
// question, one before a step is written before the step runs, one before
// a delta before the delta is shown.
func TestATurnsOutputGoesOutWithItsNextDurablePoint(t *testing.T) {
	cases := []struct {
		name    string
		handler conversation.HandlerFunc
		until   string // the turn's last event
		want    string
	}{
		{"echo", func(ctx context.Context, t *conversation.Turn) error {
			return t.Send(ctx, t.Input)
		}, protocol.EventTurnFinished, "[[user_message] [assistant_message turn_finished]]"},
		{"two messages, then the end", func(ctx context.Context, t *conversation.Turn) error {
			if err := t.Send(ctx, "one"); err != nil {
				return err
			}
			return t.Send(ctx, "two")
		}, protocol.EventTurnFinished, "[[user_message] [assistant_message assistant_message turn_finished]]"},
		{"a message, then a question", func(ctx context.Context, t *conversation.Turn) error {
			if err := t.Send(ctx, "let me ask"); err != nil {
				return err
			}
			_, err := t.Ask(ctx, "q", "go on?")
			return err
		}, protocol.EventPrompt, "[[user_message] [assistant_message prompt]]"},
		{"a message, then a step", func(ctx context.Context, t *conversation.Turn) error {
			if err := t.Send(ctx, "working on it"); err != nil {
				return err
			}
			_, err := t.Step(ctx, "work", func(context.Context, string) (json.RawMessage, error) {
				return json.RawMessage("1"), nil
			})
			return err
		}, protocol.EventTurnFinished, "[[user_message] [assistant_message] [step] [turn_finished]]"},
		{"a message, then a delta", func(ctx context.Context, t *conversation.Turn) error {
			if err := t.Send(ctx, "first"); err != nil {
				return err
			}
			return t.Delta("second, streamed")
		}, protocol.EventTurnFinished, "[[user_message] [assistant_message] [turn_finished]]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log := &countingLog{Log: memory.New()}
			key := eventlogtest.NewKey("batching")
			c, _ := start(t, log, key, 1, tc.handler)
			submit(t, c, message("m-1", "hello"))
			waitFor(t, tc.until, func() bool {
				kinds := types(t, log, key)
				return len(kinds) > 0 && kinds[len(kinds)-1] == tc.until
			})
			if got := log.writes(); got != tc.want {
				t.Fatalf("appends %s, want %s", got, tc.want)
			}
		})
	}
}
