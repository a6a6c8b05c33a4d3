package apiaudit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const runtimeUser = "system:serviceaccount:default:tether-runtime"

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// grant is the manager's status write giving conv to owner with epoch.
func grant(ms int, rv int64, owner string, epoch int64) Entry {
	e := write("system:serviceaccount:tether-system:tether-manager", "manager-0", "conversations", "status", "c1", ms, ms, 200)
	e.ResponseObject = json.RawMessage(fmt.Sprintf(`{"metadata":{"resourceVersion":"%d"},"status":{"owner":{"name":%q},"lease":{"epoch":%d}}}`, rv, owner, epoch))
	if owner == "" {
		e.ResponseObject = json.RawMessage(fmt.Sprintf(`{"metadata":{"resourceVersion":"%d"},"status":{"lease":{"epoch":%d}}}`, rv, epoch))
	}
	return e
}

// statusBy is a runtime's status write that leaves owner and epoch.
func statusBy(pod string, ms int, rv int64, owner string, epoch int64, code int) Entry {
	e := grant(ms, rv, owner, epoch)
	e.User.Username = runtimeUser
	e.User.Extra = map[string][]string{"authentication.kubernetes.io/pod-name": {pod}}
	e.ResponseStatus.Code = code
	return e
}

// answered is e answered (its stage stamped) at ms, later than it arrived.
func answered(e Entry, ms int) Entry {
	e.Completed = at(ms)
	return e
}

// timedOut is a write the API server answered with a timeout: what it
// asked for is its request, and there is no response object.
func timedOut(e Entry) Entry {
	e.RequestObject, e.ResponseObject = e.ResponseObject, nil
	e.ResponseStatus.Code = 504
	return e
}

// interrupted is a write the API server was killed in the middle of: the
// log holds its arrival only, not what it asked for.
func interrupted(e Entry) Entry {
	e.Stage, e.Interrupted, e.ResponseStatus = "RequestReceived", true, nil
	e.RequestObject, e.ResponseObject, e.Completed = nil, nil, e.RequestReceived
	return e
}

func write(user, pod, resource, sub, name string, received, completed, code int) Entry {
	var e Entry
	e.Stage, e.Verb = "ResponseComplete", "update"
	e.User.Username = user
	e.User.Extra = map[string][]string{"authentication.kubernetes.io/pod-name": {pod}}
	e.ObjectRef = &struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	}{Resource: resource, Namespace: "default", Name: name, Subresource: sub}
	e.ResponseStatus = &struct {
		Code int `json:"code"`
	}{Code: code}
	e.RequestReceived, e.Completed = at(received), at(completed)
	return e
}

func logBy(pod string, received, completed, code int) Entry {
	return write(runtimeUser, pod, "conversationlogs", "", "c1", received, completed, code)
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name     string
		entries  []Entry
		stale    int
		late     int
		orphans  int
		inferred int
		// unanswered: log writes credited with a grant still being answered
		unanswered int
	}{
		{name: "a clean move", entries: []Entry{
			grant(0, 10, "a", 1), logBy("a", 5, 6, 200), statusBy("a", 7, 11, "a", 1, 200),
			grant(100, 20, "", 2), grant(110, 21, "b", 3), logBy("b", 120, 121, 200), logBy("a", 130, 131, 409),
		}},
		{name: "a thawed owner's write refused", entries: []Entry{
			grant(0, 10, "a", 1), grant(100, 20, "b", 2), logBy("b", 120, 121, 200), logBy("a", 130, 131, 409),
		}},
		{name: "a thawed owner's write accepted after the new owner wrote", entries: []Entry{
			grant(0, 10, "a", 1), grant(100, 20, "b", 2), logBy("b", 120, 121, 200), logBy("a", 130, 131, 200),
		}, stale: 1},
		{name: "concurrent with the new owner's write: not an order", entries: []Entry{
			grant(0, 10, "a", 1), grant(100, 20, "b", 2), logBy("b", 120, 125, 200), logBy("a", 124, 126, 200),
		}, late: 1},
		{name: "late: after the revocation, before the next owner wrote", entries: []Entry{
			grant(0, 10, "a", 1), grant(100, 20, "", 2), logBy("a", 105, 106, 200), grant(110, 21, "b", 3), logBy("b", 120, 121, 200),
		}, late: 1},
		{name: "given back to the same pod", entries: []Entry{
			grant(0, 10, "a", 1), grant(100, 20, "b", 2), logBy("b", 120, 121, 200), grant(200, 30, "a", 3), logBy("a", 210, 211, 200),
		}},
		{name: "the claim arrives as its grant completes", entries: []Entry{
			grant(10, 10, "a", 1), logBy("a", 9, 12, 201),
		}},
		{name: "the claim completes while its grant is being answered", entries: []Entry{
			answered(grant(10, 10, "a", 1), 40), logBy("a", 20, 30, 200),
		}, unanswered: 1},
		{name: "a write that completed before its pod's grant arrived", entries: []Entry{
			answered(grant(10, 10, "a", 1), 40), logBy("a", 5, 8, 200),
		}, stale: 1},
		{name: "another pod's grant being answered excuses nothing", entries: []Entry{
			grant(0, 5, "a", 1), answered(grant(10, 10, "b", 2), 40), logBy("z", 20, 30, 200),
		}, stale: 1},
		{name: "a pod never given the conversation", entries: []Entry{
			grant(0, 10, "a", 1), logBy("z", 5, 6, 200),
		}, stale: 1},
		{name: "a chunk of a stale owner: an orphan copy", entries: []Entry{
			grant(0, 10, "a", 1), grant(100, 20, "b", 2), logBy("b", 120, 121, 200),
			write(runtimeUser, "a", "conversationlogchunks", "", "c1.1-32.0a1b2c3d", 130, 131, 201),
		}, orphans: 1},
		{name: "a placement that timed out but was applied", entries: []Entry{
			grant(0, 10, "a", 1), grant(100, 20, "", 2), timedOut(grant(110, 0, "b", 3)), statusBy("b", 130, 30, "b", 3, 200), logBy("b", 140, 141, 200),
		}},
		{name: "a placement that timed out, for another owner", entries: []Entry{
			grant(0, 10, "a", 1), grant(100, 20, "", 2), timedOut(grant(110, 0, "c", 3)), statusBy("b", 130, 30, "b", 3, 200),
		}, stale: 1},
		{name: "a placement that timed out after the runtime wrote", entries: []Entry{
			grant(0, 10, "a", 1), grant(100, 20, "", 2), statusBy("b", 130, 30, "b", 3, 200), timedOut(grant(140, 0, "b", 3)),
		}, stale: 1},
		{name: "a placement the API server was killed in the middle of", entries: []Entry{
			grant(0, 10, "a", 1), grant(100, 20, "", 2), interrupted(grant(110, 0, "b", 3)), logBy("b", 125, 126, 200), statusBy("b", 130, 30, "b", 3, 200), logBy("b", 140, 141, 200),
		}, inferred: 1},
		{name: "an interrupted placement before a recorded one explains nothing", entries: []Entry{
			grant(0, 10, "a", 1), interrupted(grant(50, 0, "b", 2)), grant(100, 20, "", 2), grant(2000, 21, "c", 3), statusBy("b", 2100, 30, "b", 4, 200),
		}, stale: 1},
		{name: "an interrupted placement explains one grant only", entries: []Entry{
			grant(0, 10, "a", 1), interrupted(grant(110, 0, "b", 2)), statusBy("b", 130, 30, "b", 2, 200), statusBy("b", 140, 31, "b", 3, 200),
		}, stale: 1, inferred: 1},
		{name: "an interrupted write of a runtime grants nothing", entries: []Entry{
			grant(0, 10, "a", 1), interrupted(statusBy("b", 110, 0, "b", 2, 200)), statusBy("b", 130, 30, "b", 2, 200),
		}, stale: 1},
		{name: "status written by a runtime that is not the owner", entries: []Entry{
			grant(0, 10, "a", 1), grant(100, 20, "b", 2), statusBy("a", 130, 21, "b", 2, 200),
		}, stale: 1},
		{name: "status: a runtime that changes the epoch", entries: []Entry{
			grant(0, 10, "a", 1), statusBy("a", 130, 21, "a", 5, 200),
		}, stale: 1},
		{name: "status: the epoch goes back", entries: []Entry{
			grant(0, 10, "a", 3), grant(100, 20, "b", 2),
		}, stale: 1},
		{name: "writes of other users and refused writes are not judged", entries: []Entry{
			grant(0, 10, "a", 1), write("system:admin", "", "conversationlogs", "", "c1", 5, 6, 200), statusBy("z", 7, 11, "a", 1, 422),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Judge(tc.entries, "default", RuntimeIn("default"))
			late := v.Late["log"] + v.Late["chunk"]
			interrupted := 0
			for _, e := range tc.entries {
				if e.Interrupted {
					interrupted++
				}
			}
			if n := v.Interrupted["status"] + v.Interrupted["log"]; n != interrupted {
				t.Errorf("%d interrupted writes counted, want %d", n, interrupted)
			}
			if len(v.Stale) != tc.stale || late != tc.late || len(v.Orphans) != tc.orphans || len(v.Inferred) != tc.inferred {
				t.Fatalf("stale %v, late %d, orphans %v, inferred %v; want %d stale, %d late, %d orphans, %d inferred",
					v.Stale, late, v.Orphans, v.Inferred, tc.stale, tc.late, tc.orphans, tc.inferred)
			}
			if n := v.Unanswered["log"] + v.Unanswered["chunk"]; n != tc.unanswered {
				t.Errorf("%d writes credited with a grant being answered, want %d", n, tc.unanswered)
			}
		})
	}
}

// TestRead reads JSON lines as the API server writes them, keeping
// completed requests.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	lines := `{"stage":"ResponseStarted","verb":"watch","objectRef":{"resource":"conversations"}}
{"stage":"RequestReceived","auditID":"a1","verb":"update","objectRef":{"resource":"conversationlogs","namespace":"default","name":"c1"},"requestReceivedTimestamp":"2026-12-01T12:00:00.000001Z","stageTimestamp":"2026-12-01T12:00:00.000001Z"}
{"stage":"RequestReceived","auditID":"a2","verb":"update","objectRef":{"resource":"conversations","namespace":"default","name":"c1","subresource":"status"},"requestReceivedTimestamp":"2026-12-01T12:00:01Z","stageTimestamp":"2026-12-01T12:00:01Z"}
{"stage":"ResponseComplete","auditID":"a1","verb":"update","user":{"username":"u","extra":{"authentication.kubernetes.io/pod-name":["p"]}},"objectRef":{"resource":"conversationlogs","namespace":"default","name":"c1"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-12-01T12:00:00.000001Z","stageTimestamp":"2026-12-01T12:00:00.000002Z"}
`
	if err := os.WriteFile(filepath.Join(dir, "audit.log"), []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Read(filepath.Join(dir, "audit*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Pod() != "p" || !got[0].Accepted() || got[0].ObjectRef.Name != "c1" {
		t.Fatalf("read %+v", got)
	}
	if !got[1].Interrupted || !got[1].Unknown() || got[1].Accepted() || !got[1].Completed.Equal(got[1].RequestReceived) {
		t.Fatalf("a request never answered read as %+v", got[1])
	}
	if _, err := Read(filepath.Join(dir, "none*.log")); err == nil {
		t.Fatal("no file read without an error")
	}
	if chunkConversation("conv.with.dots.1-32.abcd1234") != "conv.with.dots" {
		t.Fatal("chunk name not parsed")
	}
}
