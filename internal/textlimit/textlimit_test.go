package textlimit

import (
	"strings"
	"testing"
)

func TestTruncateKeepsUTF8(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc"},
		{"ab€", 4, "ab"}, // € is 3 bytes: cutting inside it drops it
		{strings.Repeat("é", 200), 256, strings.Repeat("é", 128)},
		{"", 0, ""},
		{"ab\xffcd€", 6, "ab\xffcd"}, // invalid input before the cut is kept, not eaten back to it
		{"€€", 3, "€"},
		{"a😀", 4, "a"},
	} {
		if got := Truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
