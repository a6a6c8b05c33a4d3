package protocol

import (
	"encoding/binary"

	"tether.dev/tether/internal/textlimit"
)

// Close codes. 1000-1015 are the WebSocket standard's; 4000-4999 are
// Tether's. A close reason is at most 123 bytes.
const (
	CloseNormal        = 1000
	CloseGoingAway     = 1001 // a server is shutting down: reconnect at once
	CloseMessageTooBig = 1009 // a frame over the read limit
	CloseBadRequest    = 4000 // the connect request was malformed
	CloseUnauthorized  = 4001 // no token, or a bad or expired one
	CloseForbidden     = 4003 // the token's subject may not use this conversation, or the Origin is not allowed
	CloseNotFound      = 4004 // no such conversation
	CloseSlowConsumer  = 4008 // the client did not read fast enough; its queue overflowed
	CloseRateLimited   = 4009 // too many frames or connections
	CloseFinished      = 4010 // the conversation is over
	CloseNotOwner      = 4011 // this runtime no longer owns the conversation
	CloseHoldTimeout   = 4012 // no owner appeared within the hold timeout
	CloseInternal      = 4500 // a server error
)

// Action is what a client should do after a close.
type Action int

const (
	// Reconnect means reconnect now, resuming after the last sequence seen.
	Reconnect Action = iota
	// ReconnectWithBackoff means reconnect after a jittered, growing delay.
	ReconnectWithBackoff
	// Reauthenticate means get a new token, then reconnect.
	Reauthenticate
	// GiveUp means reconnecting cannot help; tell the person.
	GiveUp
)

func (a Action) String() string {
	switch a {
	case Reconnect:
		return "reconnect"
	case ReconnectWithBackoff:
		return "reconnect with backoff"
	case Reauthenticate:
		return "re-authenticate"
	}
	return "give up"
}

// ActionFor says what a client does after a close with code.
func ActionFor(code int) Action {
	switch code {
	case CloseGoingAway, CloseNotOwner, CloseSlowConsumer:
		return Reconnect
	case CloseUnauthorized:
		return Reauthenticate
	case CloseBadRequest, CloseForbidden, CloseNotFound, CloseFinished, CloseMessageTooBig, CloseNormal:
		return GiveUp
	}
	// Abnormal closes (1006), rate limits, hold timeouts, server errors and
	// anything unknown: try again, politely.
	return ReconnectWithBackoff
}

// MaxCloseReasonBytes bounds a close reason: a control frame's payload is at
// most 125 bytes, two of which are the code.
const MaxCloseReasonBytes = 123

// CloseMessage is the payload of a close frame with code and reason, as
// every Tether server sends one: a reserved code that must never be sent
// (1005, 1006, 1015) becomes CloseInternal, and the reason is cut to
// MaxCloseReasonBytes at a UTF-8 character boundary.
func CloseMessage(code int, reason string) []byte {
	switch code {
	case 1005, 1006, 1015:
		code = CloseInternal
	}
	reason = textlimit.Truncate(reason, MaxCloseReasonBytes)
	out := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(out, uint16(code)) //nolint:gosec // close codes are 1000-4999
	return append(out, reason...)
}
