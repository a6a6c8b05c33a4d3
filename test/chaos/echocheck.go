package chaos

import (
	"fmt"
	"slices"
)

// answeredOnceEach checks an echo conversation's log: every message
// answered once, in order, each reply its message's text. users and replies
// are the texts of the log's messages and replies, in order, from the first
// message it keeps. A log that retention trimmed can start with replies to
// messages it no longer holds: a client's messages queue while a turn runs
// (or while its owner drains), so the trim can fall between a message and
// its reply. Those leading replies are left out, provided each is the text
// of a message the client sent (sent: id to text) and none of them is there
// twice; anything else is reported, with the first place the two disagree.
func answeredOnceEach(users, replies []string, trimmed bool, sent map[string]string) (string, bool) {
	if trimmed {
		kept := map[string]bool{}
		for _, u := range users {
			kept[u] = true
		}
		sentTexts := map[string]bool{}
		for _, text := range sent {
			sentTexts[text] = true
		}
		gone := map[string]bool{}
		for len(replies) > 0 && !kept[replies[0]] && sentTexts[replies[0]] && !gone[replies[0]] {
			gone[replies[0]] = true
			replies = replies[1:]
		}
	}
	if slices.Equal(users, replies) {
		return "", true
	}
	i := 0
	for i < len(users) && i < len(replies) && users[i] == replies[i] {
		i++
	}
	at := func(s []string) string {
		if i < len(s) {
			return fmt.Sprintf("%q", s[i])
		}
		return "nothing"
	}
	return fmt.Sprintf("%d messages, %d replies; reply %d is %s where message %d is %s", len(users), len(replies), i+1, at(replies), i+1, at(users)), false
}
