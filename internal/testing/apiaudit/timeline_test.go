package apiaudit

import (
	"strings"
	"testing"
)

func TestTimeline(t *testing.T) {
	entries := []Entry{
		grant(0, 10, "p1", 3),
		logBy("p1", 300, 350, 200),
		timedOut(grant(1000, 11, "p2", 4)),
		logBy("p2", 1200, 1250, 200),
		write(runtimeUser, "p9", "conversationlogs", "", "another", 400, 450, 200),
	}
	lines := Timeline(entries, "default", "c1", at(500), 10)
	want := []string{
		"12:00:00.000 update conversations/status by manager-0: 200 at 12:00:00.000; got p1/3 rv 10",
		"12:00:00.300 update conversationlogs by p1: 200 at 12:00:00.350",
		"12:00:01.000 update conversations/status by manager-0: 504 at 12:00:01.000; asked p2/4",
		"12:00:01.200 update conversationlogs by p2: 200 at 12:00:01.250",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if got := Timeline(entries, "default", "c1", at(500), 2); strings.Join(got, "\n") != strings.Join(want[:2], "\n") {
		t.Errorf("the 2 before 500 ms (a quarter of the limit after it, none here):\n%s", strings.Join(got, "\n"))
	}
}
