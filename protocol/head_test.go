package protocol_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/protocol"
)

func TestPeekHead(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	encode := func(f protocol.ServerFrame) string {
		data, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	tests := []struct {
		name  string
		frame string
		want  protocol.Head
		ok    bool
	}{
		{"event", encode(protocol.EventFrame(42, protocol.EventUserMessage, "c-1", at, json.RawMessage(`{"text":"hi"}`))),
			protocol.Head{Type: "event", Seq: 42, ID: "c-1"}, true},
		{"event without a client id", encode(protocol.EventFrame(7, protocol.EventAssistantMessage, "", at, json.RawMessage(`{"text":"\"seq\": 1"}`))),
			protocol.Head{Type: "event", Seq: 7}, true},
		{"prompt event, whose data has an id", encode(protocol.EventFrame(3, protocol.EventPrompt, "", at, json.RawMessage(`{"id":"p1","text":"ok?"}`))),
			protocol.Head{Type: "event", Seq: 3}, true},
		{"ack", encode(protocol.AckFrame("c-9", 12, true)), protocol.Head{Type: "ack", Seq: 12, ID: "c-9"}, true},
		{"error", encode(protocol.ErrorFrame(protocol.CodeBusy, "c-2", "busy")), protocol.Head{Type: "error", ID: "c-2"}, true},
		{"delta", encode(protocol.DeltaFrame("par")), protocol.Head{Type: "delta"}, true},
		{"status", encode(protocol.StatusFrame("Running", "")), protocol.Head{Type: "status"}, true},
		{"client message", `{"type":"message","id":"m1","text":"hello"}`, protocol.Head{Type: "message", ID: "m1"}, true},
		{"members in another order", `{"id":"x","seq":5,"type":"event"}`, protocol.Head{Type: "event", Seq: 5, ID: "x"}, true},
		{"whitespace", `{ "type": "ack", "id": "a b" }`, protocol.Head{Type: "ack", ID: "a b"}, true},
		{"escaped id", `{"type":"ack","id":"a\"b"}`, protocol.Head{Type: "ack", ID: `a"b`}, true},
		{"nested seq is not the frame's", `{"type":"event","data":{"seq":99}}`, protocol.Head{Type: "event"}, true},
		{"a member named in another case", `{"type":"","iD":"0"}`, protocol.Head{ID: "0"}, true},
		{"a later type wins", `{"type":"ack","data":[1,{"x":"]"}],"type":"error"}`, protocol.Head{Type: "error"}, true},
		{"space before a later member's colon", `{"type":"ack","x":1,"id" : "y"}`, protocol.Head{Type: "ack", ID: "y"}, true},
		{"escaped key", `{"type":"ack","i\u0064":"y"}`, protocol.Head{Type: "ack", ID: "y"}, true},
		{"not JSON", `hello`, protocol.Head{}, false},
		{"truncated", `{"type":"event","seq":4`, protocol.Head{}, false},
		{"seq too large", `{"type":"event","seq":99999999999999999999}`, protocol.Head{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := protocol.PeekHead([]byte(tt.frame))
			if ok != tt.ok {
				t.Fatalf("ok %v, want %v", ok, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("head (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzPeekHead: on any JSON object, the fast path never disagrees with a
// full decode. (What is not JSON is forwarded as it is; its head does not
// matter.)
func FuzzPeekHead(f *testing.F) {
	for _, seed := range []string{
		`{"type":"event","seq":1,"event":"user_message","id":"c1","time":"2026-11-22T10:00:00Z","data":{"text":"hi"}}`,
		`{"type":"ack","seq":5,"id":"c1"}`, `{"type":"error","id":"c1","code":"busy","message":"x"}`,
		`{"type":"event","seq":3,"event":"prompt","data":{"id":"p","seq":9}}`, `{"type":"x","id":"\u0041"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := protocol.ScanHead(data)
		if !ok {
			return
		}
		var full protocol.Head
		if json.Unmarshal(data, &full) != nil {
			return
		}
		if fast != full {
			t.Fatalf("fast path read %+v, full decode %+v, from %q", fast, full, data)
		}
	})
}

func BenchmarkPeekHead(b *testing.B) {
	frame := []byte(`{"type":"event","seq":4211,"event":"assistant_message","id":"c-17","time":"2026-11-22T10:00:00Z","data":{"text":"ping r1-3-155"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := protocol.PeekHead(frame); !ok {
			b.Fatal("not read")
		}
	}
}
