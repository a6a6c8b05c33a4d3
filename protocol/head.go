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

// scanHead reads the leading "type", "seq", "event" and "id" members of a
// compact JSON object; it gives up (ok false) on anything unusual, such as
// whitespace or an escaped string, and PeekHead decodes in full.
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
		case "seq":
			n, end := int64(0), 0
			for ; end < len(rest) && rest[end] >= '0' && rest[end] <= '9'; end++ {
				d := int64(rest[end] - '0')
				if n > (math.MaxInt64-d)/10 {
					return h, false // out of range: the full decoder says so
				}
				n = n*10 + d
			}
			if end == 0 || (end > 1 && rest[0] == '0') {
				return h, false
			}
			h.Seq, rest = n, rest[end:]
		case "id", "event":
			if len(rest) == 0 || rest[0] != '"' {
				return h, false
			}
			var v []byte
			v, rest, ok = scanString(rest[1:])
			if !ok {
				return h, false
			}
			if string(key) == "id" {
				h.ID = string(v)
			}
		default:
			// The head is over: a member the gateway does not read. What
			// follows is never seq or id in Tether's encoding, but the
			// decode-in-full path is the arbiter when unsure.
			if bytes.Contains(rest, []byte(`"seq":`)) || bytes.Contains(rest, []byte(`"id":`)) {
				return h, false
			}
			return h, true
		}
	}
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
