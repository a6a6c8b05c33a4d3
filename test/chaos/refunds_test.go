package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"tether.dev/tether/protocol"
)

// The python kind runs the Python SDK's refund example: an agent that is
// not deterministic (each real run of its "propose" step picks an amount
// at random, as a model would), in an image of its own. Each client keeps
// one conversation and asks for one refund after another in it, so a turn
// cut short by a fault is run again on another pod with the history of
// the turns before it.

// runRefunds talks to a refund conversation until ctx ends: a refund asked
// for, the question with the proposed amount awaited (held across moves),
// approved or now and then rejected after a pause, the turn followed to its
// end, the next refund; now and then it reconnects on its own, also while
// it holds the question.
func (w *world) runRefunds(ctx context.Context, tr *transcript, conns *connSet) {
	tk := w.connect(tr, conns, 0, "")
	defer func() { tk.close() }()
	stuck := func(format string, args ...any) {
		tr.mu.Lock()
		if tr.stuck == "" { // the first thing that kept it
			tr.stuck = fmt.Sprintf(format, args...) + fmt.Sprintf(": %d binds, last event %d, client error %v", tk.c.Binds(), tk.c.LastSeq(), tk.c.Err())
		}
		tr.mu.Unlock()
	}
	for i := 0; ctx.Err() == nil; i++ {
		if err := tk.send(fmt.Sprintf("refund order %s-%d", tr.name, i)); err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if !waitFor(ctx, 2*time.Minute, tr.holdsPrompt) {
			if ctx.Err() == nil {
				stuck("no question 2 min after refund %d", i)
			}
			break
		}
		time.Sleep(w.between(500*time.Millisecond, 5*time.Second)) // a human reading
		if w.chance(0.1) {
			tk = tk.reconnect() // a refreshed page: the question comes again
			if !waitFor(ctx, time.Minute, tr.holdsPrompt) {
				break
			}
		}
		tr.mu.Lock()
		promptID, promptSeq := tr.promptID, tr.promptSeq
		tr.mu.Unlock()
		decision := "approve"
		if w.chance(0.2) {
			decision = "reject"
		}
		if id, err := tk.c.Answer(promptID, decision); err == nil {
			tr.mu.Lock()
			tr.answers[id] = promptSeq
			tr.sent[id] = decision
			tr.mu.Unlock()
		}
		if !waitFor(ctx, 2*time.Minute, func() bool { return tr.turnsFinished() > i }) {
			if ctx.Err() == nil {
				stuck("refund %d not finished 2 min after its answer", i)
			}
			break
		}
	}
	// What was sent is acknowledged before the audit, faults being over.
	if !tk.waitAcked(context.Background(), 60*time.Second) {
		stuck("%d unacknowledged 60s after the faults", tk.c.Pending())
	}
}

// turnsFinished counts the turn_finished events the client saw.
func (tr *transcript) turnsFinished() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, e := range tr.events {
		if e.event == protocol.EventTurnFinished {
			n++
		}
	}
	return n
}

// refundTurn is one turn of a refund conversation, as its log holds it.
type refundTurn struct {
	input             string
	proposeSteps      int
	refundSteps       int
	proposals, asked  []string // amounts proposed and asked about
	prompt            int64    // the question's seq
	prompts, answers  int
	decision          string
	refunded, refused int // "approved: refunded" and "rejected" messages
	refundedAmount    string
	finished          int
}

// checkRefunds: per turn of a refund conversation, the amount was proposed
// once (the propose step recorded once: a run again after a move reuses it),
// asked about once with that amount, answered at most once and to that
// question, refunded once with that amount if approved and never if
// rejected, and the turn finished once; every turn but the last finished.
// The caller holds tr.mu.
func (a *findings) checkRefunds(tr *transcript, events []protocol.ServerFrame) {
	var turns []*refundTurn
	var t *refundTurn
	for _, e := range events {
		if e.Event == protocol.EventUserMessage {
			var d protocol.TextData
			_ = json.Unmarshal(e.Data, &d)
			t = &refundTurn{input: d.Text}
			turns = append(turns, t)
			continue
		}
		if t == nil {
			a.add("refund event outside a turn", tr.name, "event %d (%s) before any message", e.Seq, e.Event)
			continue
		}
		if t.finished > 0 {
			a.add("refund event after its turn finished", tr.name, "event %d (%s) after the turn of %q finished", e.Seq, e.Event, t.input)
		}
		switch e.Event {
		case protocol.EventStep:
			var d struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(e.Data, &d)
			switch d.Name {
			case "propose":
				t.proposeSteps++
			case "refund":
				t.refundSteps++
			}
		case protocol.EventAssistantMessage:
			var d protocol.TextData
			_ = json.Unmarshal(e.Data, &d)
			switch {
			case strings.HasPrefix(d.Text, "I propose refunding "):
				t.proposals = append(t.proposals, strings.TrimSuffix(strings.TrimPrefix(d.Text, "I propose refunding "), " EUR"))
			case strings.HasPrefix(d.Text, "approved: refunded "):
				t.refunded++
				t.refundedAmount = strings.TrimSuffix(strings.TrimPrefix(d.Text, "approved: refunded "), " EUR")
			case strings.HasPrefix(d.Text, "rejected"):
				t.refused++
			}
		case protocol.EventPrompt:
			var p protocol.Prompt
			_ = json.Unmarshal(e.Data, &p)
			t.prompts++
			t.prompt = e.Seq
			t.asked = append(t.asked, strings.TrimSuffix(strings.TrimPrefix(p.Text, "Refund "), " EUR?"))
		case protocol.EventAnswer:
			var d protocol.AnswerData
			_ = json.Unmarshal(e.Data, &d)
			t.answers++
			t.decision = d.Text
			if d.PromptSeq != t.prompt {
				a.add("answer applied to another question", tr.name, "answer %s applied to %d, this turn's question is %d", e.ID, d.PromptSeq, t.prompt)
			}
		case protocol.EventTurnFinished:
			t.finished++
		}
	}
	for i, t := range turns {
		where := fmt.Sprintf("turn %d (%q)", i+1, t.input)
		switch {
		case t.proposeSteps > 1 || len(t.proposals) > 1:
			a.add("refund proposed twice", tr.name, "%s: %d propose steps, proposals %v", where, t.proposeSteps, t.proposals)
		case t.prompts > 1:
			a.add("question asked twice", tr.name, "%s: %d questions", where, t.prompts)
		case t.answers > 1:
			a.add("answer applied twice", tr.name, "%s: %d answers", where, t.answers)
		case t.refundSteps > 1 || t.refunded > 1:
			a.add("refunded twice", tr.name, "%s: %d refund steps, %d refunds", where, t.refundSteps, t.refunded)
		case t.prompts == 1 && (t.proposeSteps != 1 || len(t.proposals) != 1 || t.asked[0] != t.proposals[0]):
			a.add("asked about another amount than proposed", tr.name, "%s: proposed %v, asked %v", where, t.proposals, t.asked)
		case t.decision == "reject" && (t.refundSteps > 0 || t.refunded > 0):
			a.add("refunded though rejected", tr.name, "%s", where)
		case t.refunded == 1 && (t.decision != "approve" || t.refundSteps != 1 || t.refundedAmount != t.asked[0]):
			a.add("refunded another amount than approved", tr.name, "%s: asked %v, decision %q, refunded %s", where, t.asked, t.decision, t.refundedAmount)
		case t.finished > 1:
			a.add("turn finished twice", tr.name, "%s", where)
		case t.finished == 1 && t.answers == 1 && t.refunded+t.refused != 1:
			a.add("turn finished without its outcome", tr.name, "%s: decision %q", where, t.decision)
		case t.finished == 0 && i < len(turns)-1:
			a.add("turn left unfinished", tr.name, "%s: the next turn began", where)
		}
	}
}
