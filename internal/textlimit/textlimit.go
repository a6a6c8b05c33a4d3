// Package textlimit cuts text to a byte limit without splitting a UTF-8
// sequence, for messages that must fit a field's cap.
package textlimit

import "unicode/utf8"

// Truncate cuts s to at most n bytes, dropping a partial UTF-8 sequence at
// the cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
