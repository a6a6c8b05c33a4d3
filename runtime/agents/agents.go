// Package agents holds the example agents the tests and the demo run: echo,
// which answers every message with itself, and approval, which in the middle
// of a turn asks a human to approve or reject and continues according to the
// answer.
package agents

import (
	"context"
	"fmt"

	"tether.dev/tether/runtime/conversation"
)

// Echo answers every message with its own text.
var Echo = conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error {
	return t.Send(ctx, t.Input)
})

// Approval looks a request up, asks a human to approve or reject it, and
// finishes the conversation with the outcome.
var Approval = conversation.HandlerFunc(func(ctx context.Context, t *conversation.Turn) error {
	if err := t.Send(ctx, "I can do that: "+t.Input+". I need a human to approve it first."); err != nil {
		return err
	}
	answer, err := t.Ask(ctx, fmt.Sprintf("approve-%d", t.Seq), "Approve: "+t.Input+"?", "approve", "reject")
	if err != nil {
		return err
	}
	outcome := "Approved and done: " + t.Input + "."
	if answer != "approve" {
		outcome = "Rejected; nothing was done."
	}
	if err := t.Send(ctx, outcome); err != nil {
		return err
	}
	return conversation.ErrFinish
})

// ByName returns the example agent called name.
func ByName(name string) (conversation.Handler, bool) {
	switch name {
	case "echo":
		return Echo, true
	case "approval":
		return Approval, true
	}
	return nil, false
}
