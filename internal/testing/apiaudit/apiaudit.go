// Package apiaudit judges, from the API server's audit log and not from
// Tether's own word, whether a fenced owner ever got a write accepted.
//
// The local cluster's audit policy (hack/cluster/configs.sh) records every
// write of a Conversation's status with the object written, and who wrote
// each event-log object. A runtime authenticates with a pod-bound token, so
// every write names the pod that made it. From the status writes Judge
// rebuilds who was given each conversation, with which epoch and when; it
// then checks every accepted write a runtime made:
//
//   - status: a runtime's write is accepted only while the status names it
//     owner, and leaves owner and epoch as they were; the epoch never goes
//     back.
//   - event log (head and chunks): a write by a pod carries the epoch of the
//     pod's latest grant before the write completed (or, when it has none,
//     of a grant to it whose write had arrived and was not yet answered:
//     the API server tells watchers of a commit before it stamps the
//     answer, so the two cannot be ordered; counted apart). A write by a
//     pod with no such grant was written by a pod never given the
//     conversation. It is stale when the
//     same log already holds a completed write of a newer epoch: the store
//     had seen the newer owner and still took the older one's write. A write
//     that arrives after the conversation was taken from its writer but
//     before the next owner wrote is counted as late: the store's fence is
//     the epoch it has seen, and until the next owner claims the log it has
//     seen none newer (docs/reliability.md). A chunk a pod created after a
//     newer owner wrote is counted as an orphan, not as stale: kubelog
//     creates a chunk only as a copy of events its head has committed,
//     names it after the log and the exact range it holds, never
//     overwrites one, and points a head at it only once its events are
//     the committed ones; such a chunk cannot change what the newer owner
//     wrote (a create cannot be fenced by another object's epoch: see
//     docs/reliability.md).
//
// A status write the API server answered with a server error (a timeout)
// may or may not have been applied; when a later accepted write shows the
// owner and epoch it asked for, Judge counts it as applied. So may a write
// the API server was killed in the middle of: the log then holds its
// RequestReceived stage (written before the request is served) and no
// answer, and not what it asked for. When a runtime's accepted write shows
// an owner and a newer epoch that no recorded write set, and such an
// interrupted write of the manager's arrived before it, Judge counts that
// write as the grant, and says so (Verdict.Inferred): the audit log cannot
// show who made it.
//
// Orders between writes come from the API server's own timestamps; a write
// is only judged against writes that completed before it arrived, so
// concurrent requests are never mistaken for an order.
package apiaudit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Entry is one audit event, the fields Judge reads.
type Entry struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string              `json:"username"`
		Extra    map[string][]string `json:"extra"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestReceived time.Time       `json:"requestReceivedTimestamp"`
	Completed       time.Time       `json:"stageTimestamp"`
	RequestObject   json.RawMessage `json:"requestObject"`
	ResponseObject  json.RawMessage `json:"responseObject"`
	AuditID         string          `json:"auditID"`
	// Interrupted: the log holds the request's arrival and no answer (the
	// API server stopped while it served it, or it was still being served
	// when the log was read).
	Interrupted bool `json:"-"`
}

// Pod is the pod whose bound token made the request ("" for others).
func (e *Entry) Pod() string {
	if v := e.User.Extra["authentication.kubernetes.io/pod-name"]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// Accepted reports whether the API server carried the write out.
func (e *Entry) Accepted() bool {
	return e.ResponseStatus != nil && e.ResponseStatus.Code >= 200 && e.ResponseStatus.Code < 300
}

// Unknown reports whether the write's outcome is unknown: the API server
// answered with a server error (a timeout, say), or never answered, and it
// may have been applied.
func (e *Entry) Unknown() bool {
	return e.Interrupted || e.ResponseStatus != nil && e.ResponseStatus.Code >= 500
}

// Read reads audit log files (JSON lines; the rotated ones too when given
// a glob), keeping completed requests, and the requests that arrived and
// were never answered (Interrupted).
func Read(glob string) ([]Entry, error) {
	paths, err := filepath.Glob(glob)
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no audit log matches %s", glob)
	}
	var all []Entry
	pending := map[string]Entry{} // arrived, not answered yet, by audit ID
	for _, p := range paths {
		f, err := os.Open(p) //nolint:gosec // the cluster's audit log, named by the test
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var e Entry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				_ = f.Close()
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			switch {
			case e.ObjectRef == nil:
			case e.Stage == "RequestReceived" && e.AuditID != "":
				pending[e.AuditID] = e
			case e.Stage == "ResponseComplete":
				delete(pending, e.AuditID)
				all = append(all, e)
			}
		}
		err = sc.Err()
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	for _, e := range pending {
		e.Interrupted, e.Completed = true, e.RequestReceived
		all = append(all, e)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Completed.Before(all[j].Completed) })
	return all, nil
}

// Grant is one change of a conversation's owner or epoch, as the status
// the API server stored says.
type Grant struct {
	At    time.Time // when the write that made it completed
	Asked time.Time // when the write that made it arrived
	RV    int64
	Owner string // the owner pod's name, "" when revoked
	Epoch int64
}

// Finding is an accepted write that fencing should have refused.
type Finding struct {
	Conversation, Object, Pod string
	At                        time.Time
	Why                       string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s %s: %s by %s: %s", f.At.Format("15:04:05.000"), f.Conversation, f.Object, f.Pod, f.Why)
}

// Verdict is what Judge found.
type Verdict struct {
	// Writes counts the runtimes' accepted writes by object kind (status,
	// log, chunk).
	Writes map[string]int
	// Stale are writes accepted from an owner whose epoch was older than
	// one the object had already seen, or by a pod never given the
	// conversation. Fencing holds when there are none.
	Stale []Finding
	// Late counts log writes accepted after the writer lost the
	// conversation but before its next owner wrote (see the package doc).
	Late map[string]int
	// Unanswered counts log writes by a pod that completed while the
	// status write giving it the conversation was still being answered
	// (after that write arrived, before the API server stamped its
	// answer): the API server sends a commit to watchers before it stamps
	// the answer of the write that made it, and a runtime acts on its
	// watch. The audit log cannot order the two; such a write is judged
	// with that grant's epoch.
	Unanswered map[string]int
	// Orphans are chunks created by a pod after a newer owner wrote to the
	// log: copies of committed events no head pointed at when they were
	// made (see the package doc).
	Orphans []Finding
	// Grants is each conversation's history of owners.
	Grants map[string][]Grant
	// Inferred are grants no recorded write made: a runtime's accepted
	// write showed them, and the manager had a status write of that
	// conversation interrupted (the API server killed while serving it)
	// before; the audit log cannot show what that write asked for.
	Inferred []Finding
	// Interrupted counts the writes (by object kind: status, log, chunk,
	// lease) the log shows arriving and never answered.
	Interrupted map[string]int
}

// Judge checks the accepted writes runtimes (users for which isRuntime
// holds) made in namespace ns.
func Judge(entries []Entry, ns string, isRuntime func(username string) bool) Verdict {
	v := Verdict{Writes: map[string]int{}, Late: map[string]int{}, Unanswered: map[string]int{}, Grants: map[string][]Grant{}, Interrupted: map[string]int{}}
	statuses := map[string][]statusWrite{}
	unknown := map[string][]statusWrite{}
	logs := map[string][]*Entry{}
	for i := range entries {
		e := &entries[i]
		if e.ObjectRef.Namespace != ns {
			continue
		}
		if e.Interrupted {
			v.Interrupted[kindOf(e)]++
		}
		if !e.Accepted() {
			if e.Unknown() && e.ObjectRef.Resource == "conversations" && e.ObjectRef.Subresource == "status" {
				if g, ok := grantOf(e.RequestObject); ok {
					g.At, g.Asked = e.RequestReceived, e.RequestReceived // applied, if at all, after it arrived
					unknown[e.ObjectRef.Name] = append(unknown[e.ObjectRef.Name], statusWrite{e: e, g: g})
				} else if e.Interrupted && !isRuntime(e.User.Username) {
					unknown[e.ObjectRef.Name] = append(unknown[e.ObjectRef.Name], statusWrite{e: e, blind: true})
				}
			}
			continue
		}
		switch {
		case e.ObjectRef.Resource == "conversations" && e.ObjectRef.Subresource == "status":
			g, ok := grantOf(e.ResponseObject)
			if !ok {
				continue
			}
			g.At, g.Asked = e.Completed, e.RequestReceived
			statuses[e.ObjectRef.Name] = append(statuses[e.ObjectRef.Name], statusWrite{e: e, g: g})
		case e.ObjectRef.Resource == "conversationlogs" && isRuntime(e.User.Username):
			logs[e.ObjectRef.Name] = append(logs[e.ObjectRef.Name], e)
		case e.ObjectRef.Resource == "conversationlogchunks" && isRuntime(e.User.Username):
			conv := chunkConversation(e.ObjectRef.Name)
			logs[conv] = append(logs[conv], e)
		}
	}
	for conv, writes := range statuses {
		v.Grants[conv] = judgeStatus(conv, writes, unknown[conv], isRuntime, &v)
	}
	for conv, writes := range logs {
		judgeLog(conv, writes, v.Grants[conv], &v)
	}
	slices.SortFunc(v.Stale, func(a, b Finding) int { return a.At.Compare(b.At) })
	return v
}

type statusWrite struct {
	e *Entry
	g Grant
	// blind: an interrupted write whose request the log does not hold.
	blind bool
}

// grantOf reads the owner and epoch (and resourceVersion) of a
// Conversation as an audit event holds it.
func grantOf(object json.RawMessage) (Grant, bool) {
	s, ok := stateOf(object)
	return Grant{RV: s.RV, Owner: s.Owner, Epoch: s.Epoch}, ok
}

// judgeStatus orders a conversation's status writes as etcd did and checks
// the runtimes' among them; it returns the conversation's grants. A write
// of unknown outcome that asked for the owner and epoch a runtime's
// accepted write then shows (a runtime cannot change them) was applied.
func judgeStatus(conv string, writes, unknown []statusWrite, isRuntime func(string) bool, v *Verdict) []Grant {
	slices.SortFunc(writes, func(a, b statusWrite) int { return int(a.g.RV - b.g.RV) })
	var grants []Grant
	var cur Grant
	for i, w := range writes {
		stale := func(why string) {
			v.Stale = append(v.Stale, Finding{Conversation: conv, Object: "status", Pod: w.e.Pod(), At: w.e.Completed, Why: why})
		}
		first := i == 0
		if isRuntime(w.e.User.Username) && (first || w.g.Owner != cur.Owner || w.g.Epoch != cur.Epoch) {
			if u, ok := appliedUnknown(unknown, w, cur, first); ok {
				grants = append(grants, u)
				cur, first = u, false
			} else if u, ok := appliedBlind(unknown, w, cur, first, grants); ok {
				v.Inferred = append(v.Inferred, Finding{Conversation: conv, Object: "status", Pod: w.e.Pod(), At: u.At,
					Why: fmt.Sprintf("owner %q epoch %d shown by the runtime's write at %s; the manager's write that made it was interrupted", u.Owner, u.Epoch, w.e.Completed.Format("15:04:05.000"))})
				grants = append(grants, u)
				cur, first = u, false
			}
		}
		if !first && w.g.Epoch < cur.Epoch {
			stale(fmt.Sprintf("the epoch went back from %d to %d", cur.Epoch, w.g.Epoch))
		}
		if isRuntime(w.e.User.Username) {
			v.Writes["status"]++
			switch {
			case first || cur.Owner != w.e.Pod():
				stale(fmt.Sprintf("written while the status named owner %q (epoch %d)", cur.Owner, cur.Epoch))
			case w.g.Owner != cur.Owner || w.g.Epoch != cur.Epoch:
				stale(fmt.Sprintf("the runtime changed owner/epoch %s/%d to %s/%d", cur.Owner, cur.Epoch, w.g.Owner, w.g.Epoch))
			}
		}
		if first || w.g.Owner != cur.Owner || w.g.Epoch != cur.Epoch {
			grants = append(grants, w.g)
		}
		cur = w.g
	}
	return grants
}

// appliedUnknown finds the write of unknown outcome that set what a
// runtime's accepted write w shows, when the writes seen so far (ending in
// cur) do not: one that asked for that owner and epoch, arrived before w,
// and is newer than cur.
func appliedUnknown(unknown []statusWrite, w statusWrite, cur Grant, first bool) (Grant, bool) {
	for _, u := range unknown {
		if u.blind {
			continue
		}
		if u.g.Owner == w.g.Owner && u.g.Epoch == w.g.Epoch && u.e.RequestReceived.Before(w.e.RequestReceived) && (first || u.g.Epoch > cur.Epoch) {
			return u.g, true
		}
	}
	return Grant{}, false
}

// appliedBlind finds the interrupted write of the manager's that can have
// set what a runtime's accepted write w shows, when nothing recorded did:
// a newer epoch than cur's, for w's own pod, from a write that arrived
// before w and after the grant cur came from, not used for an earlier
// grant.
func appliedBlind(unknown []statusWrite, w statusWrite, cur Grant, first bool, grants []Grant) (Grant, bool) {
	if w.g.Owner != w.e.Pod() || !first && w.g.Epoch <= cur.Epoch {
		return Grant{}, false
	}
	for _, u := range unknown {
		if !u.blind || !u.e.RequestReceived.Before(w.e.RequestReceived) || !first && !u.e.RequestReceived.After(cur.At.Add(-time.Second)) {
			continue
		}
		used := false
		for _, g := range grants {
			used = used || g.At.Equal(u.e.RequestReceived)
		}
		if !used {
			return Grant{At: u.e.RequestReceived, Asked: u.e.RequestReceived, RV: w.g.RV, Owner: w.g.Owner, Epoch: w.g.Epoch}, true
		}
	}
	return Grant{}, false
}

// judgeLog checks a conversation's event-log writes against its grants.
func judgeLog(conv string, writes []*Entry, grants []Grant, v *Verdict) {
	type done struct {
		at    time.Time
		epoch int64
	}
	var completed []done
	for _, e := range writes {
		kind := "log"
		if e.ObjectRef.Resource == "conversationlogchunks" {
			kind = "chunk"
		}
		v.Writes[kind]++
		pod := e.Pod()
		// The writer's epoch: its latest grant committed before the write
		// completed (a runtime acts on its grant as soon as etcd has it,
		// which can be a little before the API server stamps the grant's
		// completion; the lenient bound only ever credits a writer with a
		// newer grant).
		mine, next := -1, -1
		for i, g := range grants {
			if g.At.After(e.Completed) {
				break
			}
			if g.Owner == pod && g.Owner != "" {
				mine, next = i, -1
			} else if mine >= 0 && next < 0 && g.At.Before(e.RequestReceived) {
				next = i
			}
		}
		if mine < 0 {
			// A grant still being answered when the write completed may
			// have been committed before it: credit it, and count it.
			for i, g := range grants {
				if g.Owner == pod && pod != "" && g.At.After(e.Completed) && !g.Asked.After(e.Completed) {
					mine = i
					v.Unanswered[kind]++
					break
				}
			}
		}
		if mine < 0 {
			v.Stale = append(v.Stale, Finding{Conversation: conv, Object: kind + " " + e.ObjectRef.Name, Pod: pod, At: e.Completed,
				Why: "written by a pod the conversation was never given"})
			continue
		}
		epoch := grants[mine].Epoch
		newest := int64(0)
		for _, d := range completed {
			if d.at.Before(e.RequestReceived) && d.epoch > newest {
				newest = d.epoch
			}
		}
		switch {
		case epoch < newest && kind == "chunk":
			v.Orphans = append(v.Orphans, Finding{Conversation: conv, Object: kind + " " + e.ObjectRef.Name, Pod: pod, At: e.Completed,
				Why: fmt.Sprintf("a copy of committed events, created at epoch %d after the log took a write of epoch %d", epoch, newest)})
		case epoch < newest:
			v.Stale = append(v.Stale, Finding{Conversation: conv, Object: kind + " " + e.ObjectRef.Name, Pod: pod, At: e.Completed,
				Why: fmt.Sprintf("epoch %d accepted after the log took a write of epoch %d", epoch, newest)})
		case next >= 0:
			v.Late[kind]++
		}
		completed = append(completed, done{at: e.Completed, epoch: epoch})
	}
}

// kindOf names the kind of object a write is of.
func kindOf(e *Entry) string {
	switch e.ObjectRef.Resource {
	case "conversations":
		return "status"
	case "conversationlogs":
		return "log"
	case "conversationlogchunks":
		return "chunk"
	case "leases":
		return "lease"
	}
	return e.ObjectRef.Resource
}

// chunkConversation is the conversation a chunk's name belongs to
// (kubelog names chunks CONVERSATION.FIRST-LAST.LOGID).
func chunkConversation(name string) string {
	parts := strings.Split(name, ".")
	if len(parts) < 3 {
		return name
	}
	return strings.Join(parts[:len(parts)-2], ".")
}

// RuntimeIn is an isRuntime for Judge: the runtime ServiceAccount of the
// namespace (the chart names it tether-runtime).
func RuntimeIn(ns string) func(string) bool {
	want := "system:serviceaccount:" + ns + ":tether-runtime"
	return func(u string) bool { return u == want }
}
