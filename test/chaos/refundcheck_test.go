package chaos

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"tether.dev/tether/protocol"
)

// refundLog builds a refund conversation's log from short lines:
// "user", "propose", "say TEXT", "ask AMOUNT", "answer DECISION [SEQ]"
// (applied to the turn's question unless SEQ is given), "refund", "done".
func refundLog(t *testing.T, lines ...string) []protocol.ServerFrame {
	t.Helper()
	var out []protocol.ServerFrame
	var prompt int64
	for i, l := range lines {
		seq := int64(i + 1)
		f := protocol.ServerFrame{Type: protocol.TypeEvent, Seq: seq}
		data := func(v any) json.RawMessage {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		var word, rest string
		if _, err := fmt.Sscanf(l, "%s", &word); err != nil {
			t.Fatal(err)
		}
		if len(l) > len(word) {
			rest = l[len(word)+1:]
		}
		switch word {
		case "user":
			f.Event, f.ID, f.Data = protocol.EventUserMessage, fmt.Sprintf("m%d", seq), data(protocol.TextData{Text: "refund order " + rest})
		case "propose", "refund":
			f.Event, f.Data = protocol.EventStep, data(map[string]string{"name": word})
		case "say":
			f.Event, f.Data = protocol.EventAssistantMessage, data(protocol.TextData{Text: rest})
		case "ask":
			prompt = seq
			f.Event, f.Data = protocol.EventPrompt, data(protocol.Prompt{ID: "refund", Text: "Refund " + rest + " EUR?"})
		case "answer":
			to := prompt
			var decision string
			if n, _ := fmt.Sscanf(rest, "%s %d", &decision, &to); n == 0 {
				t.Fatalf("answer needs a decision: %q", l)
			}
			f.Event, f.ID, f.Data = protocol.EventAnswer, fmt.Sprintf("a%d", seq), data(protocol.AnswerData{PromptID: "refund", PromptSeq: to, Text: decision})
		case "done":
			f.Event = protocol.EventTurnFinished
		default:
			t.Fatalf("unknown line %q", l)
		}
		out = append(out, f)
	}
	return out
}

// TestCheckRefunds: the audit of refund conversations passes a log as the
// agent writes it and names each way a run again after a move could break
// it.
func TestCheckRefunds(t *testing.T) {
	approved := []string{"user 1", "propose", "say I propose refunding 150 EUR", "ask 150", "answer approve", "refund", "say approved: refunded 150 EUR", "done"}
	rejected := []string{"user 2", "propose", "say I propose refunding 200 EUR", "ask 200", "answer reject", "say rejected: nothing refunded", "done"}
	cases := []struct {
		name  string
		lines []string
		want  []string // the violations found, by what
	}{
		{"approved then rejected", slices.Concat(approved, rejected), nil},
		{"a turn cut short, still awaiting its answer", slices.Concat(approved, []string{"user 2", "propose", "say I propose refunding 120 EUR", "ask 120"}), nil},
		{"proposed twice (the step run again)", []string{"user 1", "propose", "say I propose refunding 150 EUR", "propose", "say I propose refunding 250 EUR", "ask 250"}, []string{"refund proposed twice"}},
		{"asked about another amount", []string{"user 1", "propose", "say I propose refunding 150 EUR", "ask 250", "answer reject", "say rejected: nothing refunded", "done"}, []string{"asked about another amount than proposed"}},
		{"asked twice", []string{"user 1", "propose", "say I propose refunding 150 EUR", "ask 150", "ask 150"}, []string{"question asked twice"}},
		{"answered twice", []string{"user 1", "propose", "say I propose refunding 150 EUR", "ask 150", "answer approve", "answer approve"}, []string{"answer applied twice"}},
		{"answer to the previous turn's question", slices.Concat(approved, []string{"user 2", "propose", "say I propose refunding 120 EUR", "ask 120", "answer approve 4"}), []string{"answer applied to another question"}},
		{"refunded twice", []string{"user 1", "propose", "say I propose refunding 150 EUR", "ask 150", "answer approve", "refund", "refund", "say approved: refunded 150 EUR", "done"}, []string{"refunded twice"}},
		{"refunded though rejected", []string{"user 1", "propose", "say I propose refunding 150 EUR", "ask 150", "answer reject", "refund", "say approved: refunded 150 EUR", "done"}, []string{"refunded though rejected"}},
		{"refunded another amount", []string{"user 1", "propose", "say I propose refunding 150 EUR", "ask 150", "answer approve", "refund", "say approved: refunded 180 EUR", "done"}, []string{"refunded another amount than approved"}},
		{"finished twice", slices.Concat(approved[:7], []string{"done", "done"}), []string{"refund event after its turn finished", "turn finished twice"}},
		{"finished without its outcome", []string{"user 1", "propose", "say I propose refunding 150 EUR", "ask 150", "answer approve", "done"}, []string{"turn finished without its outcome"}},
		{"left unfinished", slices.Concat(approved[:5], rejected), []string{"turn left unfinished"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &findings{violations: map[string][]string{}}
			a.checkRefunds(&transcript{name: "c"}, refundLog(t, tc.lines...))
			var got []string
			for what := range a.violations {
				got = append(got, what)
			}
			slices.Sort(got)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("violations %v, want %v: %v", got, tc.want, a.violations)
			}
		})
	}
}
