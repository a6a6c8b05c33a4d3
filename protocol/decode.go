package protocol

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// DecodeClientFrame parses and validates one client frame. A refused frame is
// an *Error with the code for the error frame; it never changes anything.
func DecodeClientFrame(data []byte) (ClientFrame, error) {
	var f ClientFrame
	if len(data) > MaxClientFrameBytes {
		return f, errorf(CodeTooLarge, "frame of %d bytes; the limit is %d", len(data), MaxClientFrameBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return ClientFrame{}, errorf(CodeBadFrame, "not a JSON frame: %v", err)
	}
	if dec.More() {
		return ClientFrame{}, errorf(CodeBadFrame, "more than one JSON value in a frame")
	}
	if err := f.Validate(); err != nil {
		return ClientFrame{}, err
	}
	return f, nil
}

// Validate checks a client frame against the protocol's rules and limits.
func (f *ClientFrame) Validate() error {
	switch f.Type {
	case TypeMessage:
		if err := validateID(f.ID); err != nil {
			return err
		}
		return validateText(f.Text)
	case TypeAnswer:
		if err := validateID(f.ID); err != nil {
			return err
		}
		if f.PromptID == "" || len(f.PromptID) > MaxPromptIDBytes {
			return errorf(CodeBadFrame, "an answer needs a promptId of 1 to %d bytes", MaxPromptIDBytes)
		}
		if f.PromptSeq < 0 {
			return errorf(CodeBadFrame, "promptSeq is the seq of a pending_prompt frame: 1 or more, or absent")
		}
		return validateDecision(f)
	case "":
		return errorf(CodeBadFrame, "a frame needs a type")
	}
	return errorf(CodeUnknownType, "unknown frame type %q", truncateForMessage(f.Type))
}

func validateID(id string) error {
	if id == "" || len(id) > MaxIDBytes {
		return errorf(CodeBadFrame, "a message needs an id of 1 to %d bytes", MaxIDBytes)
	}
	for _, r := range id {
		if r < 0x21 || r == 0x7f {
			return errorf(CodeBadFrame, "an id may not contain spaces or control characters")
		}
	}
	return nil
}

// validateDecision checks an answer: a text, or a decision on a review
// (edit with JSON arguments, respond with a text).
func validateDecision(f *ClientFrame) error {
	switch f.Decision {
	case "":
		return validateText(f.Text)
	case DecisionAccept, DecisionIgnore:
	case DecisionEdit:
		if len(f.Args) == 0 || len(f.Args) > MaxArgsBytes || !json.Valid(f.Args) {
			return errorf(CodeBadFrame, "an edit needs args: the edited arguments, JSON of at most %d bytes", MaxArgsBytes)
		}
	case DecisionRespond:
		return validateText(f.Text)
	default:
		return errorf(CodeBadFrame, "decision %.20q: want one of %v", f.Decision, Decisions)
	}
	if f.Text != "" {
		return validateText(f.Text)
	}
	return nil
}

func validateText(text string) error {
	if text == "" {
		return errorf(CodeBadFrame, "text is required")
	}
	if len(text) > MaxTextBytes {
		return errorf(CodeTooLarge, "text of %d bytes; the limit is %d", len(text), MaxTextBytes)
	}
	if !utf8.ValidString(text) {
		return errorf(CodeBadFrame, "text is not valid UTF-8")
	}
	if n := EncodedTextLen(text); n > MaxEncodedTextBytes {
		return errorf(CodeTooLarge, "text of %d bytes is %d bytes as JSON; the limit is %d", len(text), n, MaxEncodedTextBytes)
	}
	return nil
}

// EncodedTextLen is the length of s as encoding/json writes it, a quoted
// string with HTML-safe escapes (an invalid byte becomes \ufffd), without
// encoding it; it may exceed it by a few bytes, never fall short.
func EncodedTextLen(s string) int {
	n := 2
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			n += 6
		case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
			n += 2
		case r < 0x20 || r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += utf8.RuneLen(r)
		}
	}
	return n
}

// FrameID is the id a frame names, when it is a valid id: what an error
// frame answering a refused frame carries, so the sender can tell which of
// its frames was refused. It is "" for anything else.
func FrameID(data []byte) string {
	h, ok := PeekHead(data)
	if !ok || validateID(h.ID) != nil {
		return ""
	}
	return h.ID
}

// truncateForMessage keeps what a peer sent from bloating an error message.
func truncateForMessage(s string) string {
	const n = 32
	if len(s) <= n {
		return s
	}
	for i := n; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "..."
		}
	}
	return ""
}
