package protocol

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// PathPrefix is where both the gateway (for clients) and a runtime (for the
// gateway) serve conversations: PathPrefix + "{namespace}/{name}", with the
// resume cursor as the query parameter "after".
const PathPrefix = "/v1/conversations/"

// AfterParam is the query parameter holding the last sequence number a
// client saw.
const AfterParam = "after"

// LogParam is the query parameter naming the history the cursor belongs to:
// the log identity of the last replay_complete the client saw.
const LogParam = "log"

// MaxLogIDBytes bounds a log identity.
const MaxLogIDBytes = 64

// Cursor is where a reconnecting client resumes: after sequence number
// After of the history named Log (empty: whichever history there is).
type Cursor struct {
	After int64
	Log   string
}

// Query renders the cursor as query parameters.
func (c Cursor) Query() url.Values {
	q := url.Values{AfterParam: {strconv.FormatInt(c.After, 10)}}
	if c.Log != "" {
		q.Set(LogParam, c.Log)
	}
	return q
}

// ConversationPath is the path of a conversation's socket.
func ConversationPath(namespace, name string) string {
	return PathPrefix + url.PathEscape(namespace) + "/" + url.PathEscape(name)
}

// ParseConversationURL reads the namespace, name and resume cursor of a
// conversation's socket URL. A missing cursor is 0: everything retained.
func ParseConversationURL(u *url.URL) (namespace, name string, cur Cursor, err error) {
	rest, ok := strings.CutPrefix(u.Path, PathPrefix)
	namespace, name, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || namespace == "" || name == "" || strings.Contains(name, "/") || len(rest) > 253+1+253 {
		return "", "", Cursor{}, fmt.Errorf("want %s{namespace}/{name}", PathPrefix)
	}
	q := u.Query()
	if v := q.Get(AfterParam); v != "" {
		cur.After, err = strconv.ParseInt(v, 10, 64)
		if err != nil || cur.After < 0 {
			return "", "", Cursor{}, fmt.Errorf("%s must be a sequence number of 0 or more", AfterParam)
		}
	}
	cur.Log = q.Get(LogParam)
	if len(cur.Log) > MaxLogIDBytes || strings.ContainsFunc(cur.Log, notLogIDRune) {
		return "", "", Cursor{}, fmt.Errorf("%s must be a log identity from a replay_complete frame (letters, digits and '-', at most %d bytes)", LogParam, MaxLogIDBytes)
	}
	return namespace, name, cur, nil
}

func notLogIDRune(r rune) bool {
	return r != '-' && (r < '0' || r > '9') && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z')
}
