package chaos

import (
	"strings"
	"testing"
)

func TestAnsweredOnceEach(t *testing.T) {
	sent := map[string]string{"1": "m1", "2": "m2", "3": "m3", "4": "m4", "5": "m5"}
	split := strings.Fields
	cases := []struct {
		name            string
		users, replies  string
		trimmed, wantOK bool
	}{
		{"each once, in order", "m1 m2 m3", "m1 m2 m3", false, true},
		{"a reply twice", "m1 m2 m3", "m1 m2 m2 m3", false, false},
		{"a message unanswered", "m1 m2 m3", "m1 m3", false, false},
		{"out of order", "m1 m2", "m2 m1", false, false},
		{"trimmed between queued messages and their replies", "m3 m4 m5", "m1 m2 m3 m4 m5", true, true},
		{"the same leading reply only when trimmed", "m3 m4 m5", "m1 m2 m3 m4 m5", false, false},
		{"trimmed, a leading reply twice", "m3 m4", "m2 m2 m3 m4", true, false},
		{"trimmed, a leading reply the client never sent", "m3 m4", "x m3 m4", true, false},
		{"trimmed, a kept message answered twice", "m3 m4", "m2 m3 m3 m4", true, false},
		{"trimmed, a reply after the kept ones", "m3 m4", "m2 m3 m4 m1", true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			detail, ok := answeredOnceEach(split(tc.users), split(tc.replies), tc.trimmed, sent)
			if ok != tc.wantOK {
				t.Fatalf("ok %v (%s), want %v", ok, detail, tc.wantOK)
			}
		})
	}
}
