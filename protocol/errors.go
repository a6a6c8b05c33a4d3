package protocol

import "fmt"

// Code is a stable error code; clients branch on it, people read Message.
type Code string

// Error codes of error frames.
const (
	// CodeBadFrame: not JSON, or not a valid frame.
	CodeBadFrame Code = "bad_frame"
	// CodeUnknownType: a frame type this protocol does not have.
	CodeUnknownType Code = "unknown_type"
	// CodeTooLarge: a frame or a text over its limit.
	CodeTooLarge Code = "too_large"
	// CodeNoPendingPrompt: an answer while no prompt is pending.
	CodeNoPendingPrompt Code = "no_pending_prompt"
	// CodePromptMismatch: an answer to a prompt that is not the pending one.
	CodePromptMismatch Code = "prompt_mismatch"
	// CodeInvalidOption: an answer that is not one of the prompt's options.
	CodeInvalidOption Code = "invalid_option"
	// CodeBusy: a message during a running turn, refused by the Agent's
	// busy policy (Reject).
	CodeBusy Code = "busy"
	// CodeQueueFull: a message that would exceed the queued-message bound.
	CodeQueueFull Code = "queue_full"
	// CodeRateLimited: too many frames; slow down.
	CodeRateLimited Code = "rate_limited"
	// CodeHoldFull: the gateway holds no more frames while the conversation
	// has no owner; send again after the next status frame.
	CodeHoldFull Code = "hold_full"
	// CodeFinished: the conversation is over and takes no more input.
	CodeFinished Code = "finished"
	// CodeUnavailable: the frame could not be applied now (the store or the
	// owner is unavailable); it was not applied, send it again.
	CodeUnavailable Code = "unavailable"
)

// Error is a refused frame: the code and message of the error frame the
// peer gets. Nothing about the conversation changed.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
