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

// ConversationPath is the path of a conversation's socket.
func ConversationPath(namespace, name string) string {
	return PathPrefix + url.PathEscape(namespace) + "/" + url.PathEscape(name)
}

// ParseConversationURL reads the namespace, name and resume cursor of a
// conversation's socket URL. A missing cursor is 0: everything retained.
func ParseConversationURL(u *url.URL) (namespace, name string, after int64, err error) {
	rest, ok := strings.CutPrefix(u.Path, PathPrefix)
	namespace, name, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || namespace == "" || name == "" || strings.Contains(name, "/") || len(rest) > 253+1+253 {
		return "", "", 0, fmt.Errorf("want %s{namespace}/{name}", PathPrefix)
	}
	if v := u.Query().Get(AfterParam); v != "" {
		after, err = strconv.ParseInt(v, 10, 64)
		if err != nil || after < 0 {
			return "", "", 0, fmt.Errorf("%s must be a sequence number of 0 or more", AfterParam)
		}
	}
	return namespace, name, after, nil
}
