package chaos

import (
	"strings"
	"testing"
	"time"
)

// TestFindClaim: the claim of a slow sample is the one at its epoch logged
// near when its status write was answered, with where its time went and the errors
// logged for the conversation before it.
func TestFindClaim(t *testing.T) {
	at := time.Date(2026, 12, 2, 18, 0, 10, 0, time.UTC)
	const (
		failed       = `{"ts":"2026-12-02T18:00:08Z","msg":"Reconciler error","name":"c1","error":"claiming: the server was unable to return a response"}`
		claimed      = `{"ts":"2026-12-02T18:00:10Z","msg":"claimed","name":"c1","epoch":7,"took":1.25,"sinceAssigned":1.5,"storeClaim":0.1,"read":0.9,"events":420,"publish":0.2}`
		old          = `{"ts":"2026-12-02T17:50:00Z","msg":"claimed","name":"c1","epoch":7,"took":0.02}`
		fromSnapshot = `{"ts":"2026-12-02T18:00:10Z","msg":"claimed","name":"c1","epoch":7,"took":0.2,"storeClaim":0.05,"read":0.1,"events":37,"snapshotSeq":4000,"publish":0.05}`
		other        = `{"ts":"2026-12-02T18:00:10Z","msg":"claimed","name":"c2","epoch":7,"took":0.5}`
	)
	cases := []struct {
		name, log string
		found     bool
		want      string
	}{
		{"timed phases", claimed, true, "claimed in 1.250s, 1.500s after it was assigned (the store's claim 0.100s, reading 420 events (whole) 0.900s, the status 0.200s)"},
		{"after a snapshot", fromSnapshot, true, "reading 37 events (after the snapshot at 4000)"},
		{"errors before it", failed + "\n" + claimed, true, "; before that 1 errors, the last: Reconciler error: claiming: the server was unable"},
		{"a claim at the same epoch long before is not it", old, false, ""},
		{"another conversation's claim is not it", other, false, ""},
		{"a line that is not JSON is skipped", "panic: oops\n" + claimed, true, "claimed in 1.250s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := findClaim(tc.log, "c1", 7, at)
			if ok != tc.found || !strings.Contains(got, tc.want) {
				t.Fatalf("findClaim = %q, %v; want %v and %q in it", got, ok, tc.found, tc.want)
			}
		})
	}
}
