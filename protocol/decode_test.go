package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeClientFrame(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want ClientFrame
		code Code
	}{
		{"message", `{"type":"message","id":"c-1","text":"refund order 1234"}`, ClientFrame{Type: TypeMessage, ID: "c-1", Text: "refund order 1234"}, ""},
		{"answer", `{"type":"answer","id":"c-2","promptId":"p1","text":"approve"}`, ClientFrame{Type: TypeAnswer, ID: "c-2", PromptID: "p1", Text: "approve"}, ""},
		{"unknown fields are ignored", `{"type":"message","id":"c-3","text":"hi","future":true}`, ClientFrame{Type: TypeMessage, ID: "c-3", Text: "hi"}, ""},
		{"not JSON", `hello`, ClientFrame{}, CodeBadFrame},
		{"truncated JSON", `{"type":"message","id":`, ClientFrame{}, CodeBadFrame},
		{"two values", `{"type":"message","id":"a","text":"1"}{"type":"message","id":"b","text":"2"}`, ClientFrame{}, CodeBadFrame},
		{"resume is not a client frame: the cursor is given when connecting", `{"type":"resume","after":41}`, ClientFrame{}, CodeUnknownType},
		{"an answer naming a negative promptSeq", `{"type":"answer","id":"c-2","promptId":"p1","promptSeq":-3,"text":"approve"}`, ClientFrame{}, CodeBadFrame},
		{"an array", `[1,2]`, ClientFrame{}, CodeBadFrame},
		{"no type", `{"id":"c-1","text":"hi"}`, ClientFrame{}, CodeBadFrame},
		{"unknown type", `{"type":"delete_everything"}`, ClientFrame{}, CodeUnknownType},
		{"message without id", `{"type":"message","text":"hi"}`, ClientFrame{}, CodeBadFrame},
		{"message without text", `{"type":"message","id":"c-1"}`, ClientFrame{}, CodeBadFrame},
		{"id with a space", `{"type":"message","id":"c 1","text":"hi"}`, ClientFrame{}, CodeBadFrame},
		{"id too long", `{"type":"message","id":"` + strings.Repeat("i", MaxIDBytes+1) + `","text":"hi"}`, ClientFrame{}, CodeBadFrame},
		{"text too long", `{"type":"message","id":"c-1","text":"` + strings.Repeat("t", MaxTextBytes+1) + `"}`, ClientFrame{}, CodeTooLarge},
		{"text under the limit that escapes past the event limit", `{"type":"message","id":"c-1","text":"` + strings.Repeat("<", MaxTextBytes) + `"}`, ClientFrame{}, CodeTooLarge},
		{"text that escapes to just under the encoded limit", `{"type":"message","id":"c-1","text":"` + strings.Repeat("<", (MaxEncodedTextBytes-2)/6) + `"}`,
			ClientFrame{Type: TypeMessage, ID: "c-1", Text: strings.Repeat("<", (MaxEncodedTextBytes-2)/6)}, ""},
		{"frame too large", `{"type":"message","id":"c-1","text":"` + strings.Repeat("t", MaxClientFrameBytes) + `"}`, ClientFrame{}, CodeTooLarge},
		{"answer without promptId", `{"type":"answer","id":"c-2","text":"approve"}`, ClientFrame{}, CodeBadFrame},
		{"wrong field type", `{"type":"answer","id":"c-2","promptId":"p1","promptSeq":"4","text":"approve"}`, ClientFrame{}, CodeBadFrame},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeClientFrame([]byte(tc.in))
			if tc.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
				return
			}
			var perr *Error
			if !errors.As(err, &perr) || perr.Code != tc.code {
				t.Fatalf("got %v; want an error with code %s", err, tc.code)
			}
			if len(perr.Message) > 200 {
				t.Errorf("error message of %d bytes echoes too much input", len(perr.Message))
			}
		})
	}
}

// TestEncodedLen: the size check never underestimates what encoding/json
// writes (it is exact but for the two escapes Go spells shorter).
func TestEncodedLen(t *testing.T) {
	for _, s := range []string{"", "plain", "<script>&", "quote \" and \\ back", "tab\tnew\nline\r", "\x00\x01\x1f\b\f",
		"\u2028\u2029", "bad \xff\xfe utf-8", "héllo wörld ✓ 😀", strings.Repeat("<", 100)} {
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := EncodedTextLen(s); got < len(data) || got > len(data)+8 {
			t.Errorf("EncodedTextLen(%q) = %d, encoding/json writes %d", s, got, len(data))
		}
	}
}

func TestFrameID(t *testing.T) {
	for in, want := range map[string]string{
		`{"type":"message","id":"c-1","text":""}`:                             "c-1",
		`{"type":"message","id":"c 1","text":"x"}`:                            "",
		`{"type":"message","id":"` + strings.Repeat("i", MaxIDBytes+1) + `"}`: "",
		`not json`: "",
	} {
		if got := FrameID([]byte(in)); got != want {
			t.Errorf("FrameID(%.40s) = %q, want %q", in, got, want)
		}
	}
}

func TestActionFor(t *testing.T) {
	for code, want := range map[int]Action{
		CloseGoingAway: Reconnect, CloseNotOwner: Reconnect, CloseSlowConsumer: Reconnect,
		CloseUnauthorized: Reauthenticate,
		CloseForbidden:    GiveUp, CloseNotFound: GiveUp, CloseFinished: GiveUp, CloseBadRequest: GiveUp, CloseMessageTooBig: GiveUp,
		CloseRateLimited: ReconnectWithBackoff, CloseHoldTimeout: ReconnectWithBackoff, CloseInternal: ReconnectWithBackoff,
		1006: ReconnectWithBackoff, 4999: ReconnectWithBackoff,
	} {
		if got := ActionFor(code); got != want {
			t.Errorf("ActionFor(%d) = %s, want %s", code, got, want)
		}
	}
}

// TestServerFramesOnTheWire pins the JSON of each server frame, as
// docs/protocol.md shows it.
func TestServerFramesOnTheWire(t *testing.T) {
	cases := []struct {
		frame ServerFrame
		want  string
	}{
		{DeltaFrame("Look"), `{"type":"delta","text":"Look","durable":false}`},
		{AckFrame("c-1", 7, false), `{"type":"ack","seq":7,"id":"c-1"}`},
		{AckFrame("c-1", 7, true), `{"type":"ack","seq":7,"id":"c-1","duplicate":true}`},
		{StatusFrame("Rescheduling", "owner pod lost; moving"), `{"type":"status","phase":"Rescheduling","message":"owner pod lost; moving"}`},
		{ReplayCompleteFrame(false, 21, 30, "L1"), `{"type":"replay_complete","complete":false,"firstSeq":21,"lastSeq":30,"log":"L1"}`},
		{ResetFrame(ResetCursorAhead, "L1", "m"), `{"type":"reset","log":"L1","code":"cursor_ahead","message":"m"}`},
		{ErrorFrame(CodePromptMismatch, "c-9", "prompt p1 is not pending"), `{"type":"error","id":"c-9","code":"prompt_mismatch","message":"prompt p1 is not pending"}`},
	}
	for _, tc := range cases {
		got, err := json.Marshal(tc.frame)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

// FuzzDecodeClientFrame: no input crashes the decoder, and whatever it
// accepts is valid and survives a round trip unchanged.
func FuzzDecodeClientFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"message","id":"c-1","text":"hi"}`,
		`{"type":"answer","id":"c-2","promptId":"p1","text":"approve"}`,
		`{"type":"answer","id":"c-2","promptId":"p1","promptSeq":4,"text":"approve"}`,
		`{"type":"resume","after":41}`,
		`{"type":"message","id":"c-1","text":"\ud800"}`,
		`{"type":1}`, `null`, `[]`, `{}`, ``, `{"type":"message"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		frame, err := DecodeClientFrame(data)
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error %v is not a protocol error", err)
			}
			return
		}
		if err := frame.Validate(); err != nil {
			t.Fatalf("accepted an invalid frame %+v: %v", frame, err)
		}
		again, err := json.Marshal(frame)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeClientFrame(again)
		if err != nil {
			t.Fatalf("re-encoded frame %s refused: %v", again, err)
		}
		if diff := cmp.Diff(frame, back); diff != "" {
			t.Fatalf("round trip changed the frame (-first +second):\n%s", diff)
		}
	})
}

func TestCloseMessage(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	for _, tc := range []struct {
		name       string
		code       int
		reason     string
		wantCode   int
		wantReason string
	}{
		{"a code of Tether's", CloseNotOwner, "conversation moved", CloseNotOwner, "conversation moved"},
		{"1005 is never sent", 1005, "", CloseInternal, ""},
		{"1006 is never sent", 1006, "lost", CloseInternal, "lost"},
		{"1015 is never sent", 1015, "tls", CloseInternal, "tls"},
		{"a long reason is cut at a character", CloseRateLimited, long, CloseRateLimited, strings.Repeat("é", 61)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := CloseMessage(tc.code, tc.reason)
			if len(msg) > 125 {
				t.Fatalf("%d bytes: a control frame holds 125", len(msg))
			}
			if code := int(msg[0])<<8 | int(msg[1]); code != tc.wantCode || string(msg[2:]) != tc.wantReason {
				t.Fatalf("close %d %q, want %d %q", code, msg[2:], tc.wantCode, tc.wantReason)
			}
			if !utf8.Valid(msg[2:]) {
				t.Fatalf("the reason is not valid UTF-8: %q", msg[2:])
			}
		})
	}
}
