package apiaudit

import (
	"fmt"
	"slices"
	"time"
)

// Timeline is what the log holds of one conversation's writes around at,
// in the order they arrived: each write's arrival and answer, who made it,
// its object and code, and the owner and epoch a status write asked for
// and got. At most limit lines, those nearest at; a stale finding comes
// with it, so that a run's report says what the audit saw.
func Timeline(entries []Entry, ns, conv string, at time.Time, limit int) []string {
	var mine []*Entry
	for i := range entries {
		e := &entries[i]
		if e.ObjectRef == nil || e.ObjectRef.Namespace != ns {
			continue
		}
		switch {
		case e.ObjectRef.Resource == "conversations" && e.ObjectRef.Name == conv,
			e.ObjectRef.Resource == "conversationlogs" && e.ObjectRef.Name == conv,
			e.ObjectRef.Resource == "conversationlogchunks" && chunkConversation(e.ObjectRef.Name) == conv:
			mine = append(mine, e)
		}
	}
	slices.SortStableFunc(mine, func(a, b *Entry) int { return a.RequestReceived.Compare(b.RequestReceived) })
	// The limit lines nearest at: from the last that arrived before it.
	end := len(mine)
	for i, e := range mine {
		if e.RequestReceived.After(at) {
			end = min(len(mine), i+limit/4)
			break
		}
	}
	start := max(0, end-limit)
	lines := make([]string, 0, end-start)
	for _, e := range mine[start:end] {
		lines = append(lines, describe(e))
	}
	return lines
}

func describe(e *Entry) string {
	who := e.Pod()
	if who == "" {
		who = e.User.Username
	}
	answer := "never answered"
	if !e.Interrupted && e.ResponseStatus != nil {
		answer = fmt.Sprintf("%d at %s", e.ResponseStatus.Code, e.Completed.Format("15:04:05.000"))
	}
	object := e.ObjectRef.Resource
	if e.ObjectRef.Subresource != "" {
		object += "/" + e.ObjectRef.Subresource
	}
	if e.ObjectRef.Resource == "conversationlogchunks" {
		object += " " + e.ObjectRef.Name
	}
	line := fmt.Sprintf("%s %s %s by %s: %s", e.RequestReceived.Format("15:04:05.000"), e.Verb, object, who, answer)
	if e.ObjectRef.Resource == "conversations" && e.ObjectRef.Subresource == "status" {
		if g, ok := grantOf(e.RequestObject); ok {
			line += fmt.Sprintf("; asked %s/%d", g.Owner, g.Epoch)
		}
		if g, ok := grantOf(e.ResponseObject); ok {
			line += fmt.Sprintf("; got %s/%d rv %d", g.Owner, g.Epoch, g.RV)
		}
	}
	return line
}
