package protocol

import (
	"bytes"
	"encoding/json"
	"math"
)

// Head is what a proxy reads of a frame it forwards: its type, the sequence
// number of an event and the client id of an ack, an error or a message. The
// rest passes through untouched.
type Head struct {
	Type string `json:"type"`
	Seq  int64  `json:"seq"`
	ID   string `json:"id"`
}

// PeekHead reads a frame's head. Frames from Tether's own encoders start
// with their type and keep seq and id before the payload, so the head is
// read without decoding the payload; anything else is decoded
// in full. ok is false for a frame that is not a JSON object.
func PeekHead(data []byte) (h Head, ok bool) {
	if h, ok := scanHead(data); ok {
		return h, true
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return Head{}, false
	}
	return h, true
}

// scanHead reads the "type", "seq" and "id" members of a compact JSON
// object, skipping every other member's value without decoding it. It gives
// up (ok false) on anything it cannot read exactly as encoding/json would:
// whitespace between members, a key with an escape or a non-ASCII byte, a
// key that matches a head member only case-insensitively (encoding/json
// folds case), a head value of an unusual form. PeekHead then decodes in
// full.
func scanHead(data []byte) (h Head, ok bool) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"type":"`))
	if !ok {
		return h, false
	}
	typ, rest, ok := scanString(rest)
	if !ok {
		return h, false
	}
	h.Type = internType(typ)
	for {
		if len(rest) == 1 && rest[0] == '}' {
			return h, true
		}
		if len(rest) < 2 || rest[0] != ',' || rest[1] != '"' {
			return h, false
		}
		var key []byte
		key, rest, ok = scanString(rest[2:])
		if !ok || len(rest) == 0 || rest[0] != ':' {
			return h, false
		}
		rest = rest[1:]
		switch string(key) {
		case "type", "id":
			if len(rest) == 0 || rest[0] != '"' {
				return h, false
			}
			var v []byte
			if v, rest, ok = scanString(rest[1:]); !ok {
				return h, false
			}
			if string(key) == "type" {
				h.Type = internType(v)
			} else {
				h.ID = string(v)
			}
		case "seq":
			if h.Seq, rest, ok = scanSeq(rest); !ok {
				return h, false
			}
		default:
			if foldsToHeadMember(key) {
				return h, false
			}
			if rest, ok = skipValue(rest); !ok {
				return h, false
			}
		}
	}
}

// foldsToHeadMember reports whether encoding/json would store a member of
// this (ASCII) name into a Head field although it is not spelled exactly.
func foldsToHeadMember(key []byte) bool {
	return bytes.EqualFold(key, []byte("type")) || bytes.EqualFold(key, []byte("seq")) ||
		bytes.EqualFold(key, []byte("id"))
}

// scanSeq reads a non-negative integer without a leading zero.
func scanSeq(data []byte) (n int64, rest []byte, ok bool) {
	end := 0
	for ; end < len(data) && data[end] >= '0' && data[end] <= '9'; end++ {
		d := int64(data[end] - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, nil, false // out of range: the full decoder says so
		}
		n = n*10 + d
	}
	if end == 0 || (end > 1 && data[0] == '0') {
		return 0, nil, false
	}
	return n, data[end:], true
}

// skipValue steps over one JSON value: a string, or everything up to the
// comma or brace that ends the member at depth zero. It does not validate
// what it skips; a frame that is not valid JSON fails the full decode
// wherever it is used, and its head does not matter.
func skipValue(data []byte) (rest []byte, ok bool) {
	depth, inString := 0, false
	for i := 0; i < len(data); i++ {
		b := data[i]
		switch {
		case inString:
			switch b {
			case '\\':
				i++
			case '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			depth++
		case b == '}' || b == ']':
			if depth == 0 {
				return data[i:], i > 0
			}
			depth--
		case b == ',' && depth == 0:
			return data[i:], i > 0
		}
	}
	return nil, false
}

// scanString reads a JSON string's body up to its closing quote; it refuses
// escapes, control characters and non-ASCII bytes, which the full decoder
// handles (it replaces invalid UTF-8).
func scanString(data []byte) (s, rest []byte, ok bool) {
	for i, b := range data {
		switch {
		case b == '"':
			return data[:i], data[i+1:], true
		case b == '\\' || b < 0x20 || b >= 0x80:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// internType returns the protocol's own string for a known frame type, so
// reading the head of a frame does not allocate one.
func internType(t []byte) string {
	for _, known := range knownTypes {
		if string(t) == known {
			return known
		}
	}
	return string(t)
}

var knownTypes = []string{TypeEvent, TypeAck, TypeDelta, TypeStatus, TypeError, TypeReplayComplete,
	TypePendingPrompt, TypeMessage, TypeAnswer, TypeReset}
