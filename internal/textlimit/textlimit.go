// Package textlimit cuts text to a byte limit without splitting a UTF-8
// sequence, for messages that must fit a field's cap.
package textlimit

import "unicode/utf8"

// Truncate cuts s to at most n bytes, dropping a partial UTF-8 sequence at
// the cut (and nothing before it).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for i := len(s) - 1; i >= 0 && i >= len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				s = s[:i]
			}
			break
		}
	}
	return s
}
