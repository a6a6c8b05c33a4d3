package apiaudit

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// State is a conversation's status as one accepted write left it.
type State struct {
	// At is when the API server answered the write: its own clock, not
	// when a watcher was told.
	At    time.Time
	RV    int64
	Owner string // the owner pod's name, "" when none
	Epoch int64
	Phase string
}

// States is the history of each conversation's status in namespace ns,
// one State per accepted status write, in the order etcd applied them
// (by resourceVersion). A write of unknown outcome is not in it: what it
// did, if anything, the next accepted write shows.
//
// A watch tells of the same changes later, and after an API server
// restart it may tell of the current state only: a history that says
// when a conversation was claimed comes from here.
func States(entries []Entry, ns string) map[string][]State {
	out := map[string][]State{}
	for i := range entries {
		e := &entries[i]
		if e.ObjectRef == nil || e.ObjectRef.Namespace != ns || e.ObjectRef.Resource != "conversations" ||
			e.ObjectRef.Subresource != "status" || !e.Accepted() {
			continue
		}
		s, ok := stateOf(e.ResponseObject)
		if !ok {
			continue
		}
		s.At = e.Completed
		out[e.ObjectRef.Name] = append(out[e.ObjectRef.Name], s)
	}
	for _, line := range out {
		slices.SortStableFunc(line, func(a, b State) int {
			return cmp.Or(cmp.Compare(a.RV, b.RV), a.At.Compare(b.At))
		})
	}
	return out
}

// stateOf reads a Conversation's owner, epoch and phase (and its
// resourceVersion) as an audit event holds it.
func stateOf(object json.RawMessage) (State, bool) {
	var obj struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Status struct {
			Phase string `json:"phase"`
			Owner *struct {
				Name string `json:"name"`
			} `json:"owner"`
			Lease *struct {
				Epoch int64 `json:"epoch"`
			} `json:"lease"`
		} `json:"status"`
	}
	if len(object) == 0 || json.Unmarshal(object, &obj) != nil {
		return State{}, false
	}
	s := State{Phase: obj.Status.Phase}
	s.RV, _ = strconv.ParseInt(obj.Metadata.ResourceVersion, 10, 64)
	if obj.Status.Owner != nil {
		s.Owner = obj.Status.Owner.Name
	}
	if obj.Status.Lease != nil {
		s.Epoch = obj.Status.Lease.Epoch
	}
	return s, true
}
