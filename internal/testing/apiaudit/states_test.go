package apiaudit

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

// phased is e with phase in the status it answered with.
func phased(e Entry, phase string) Entry {
	var obj map[string]any
	if err := json.Unmarshal(e.ResponseObject, &obj); err != nil {
		panic(err)
	}
	obj["status"].(map[string]any)["phase"] = phase
	e.ResponseObject, _ = json.Marshal(obj)
	return e
}

func TestStates(t *testing.T) {
	elsewhere := grant(50, 9, "p9", 1)
	elsewhere.ObjectRef.Namespace = "other"
	for _, tc := range []struct {
		name    string
		entries []Entry
		want    []string // c1's states: "ms owner/epoch phase"
	}{
		{
			name: "placed, claimed, moved",
			entries: []Entry{
				phased(grant(0, 10, "p1", 1), "Pending"),
				phased(statusBy("p1", 100, 11, "p1", 1, 200), "Running"),
				phased(grant(900, 12, "p2", 2), "Rescheduling"),
				phased(statusBy("p2", 1300, 13, "p2", 2, 200), "AwaitingInput"),
			},
			want: []string{"0 p1/1 Pending", "100 p1/1 Running", "900 p2/2 Rescheduling", "1300 p2/2 AwaitingInput"},
		},
		{
			name: "refused and unknown writes change nothing",
			entries: []Entry{
				phased(grant(0, 10, "p1", 1), "Pending"),
				phased(statusBy("p0", 50, 10, "p0", 0, 409), "Running"),
				timedOut(phased(grant(80, 11, "p2", 2), "Rescheduling")),
				interrupted(grant(90, 11, "p3", 3)),
			},
			want: []string{"0 p1/1 Pending"},
		},
		{
			name: "in etcd's order, not the answers'",
			entries: []Entry{
				phased(statusBy("p1", 200, 11, "p1", 1, 200), "Running"),
				phased(grant(150, 12, "", 1), "Suspended"),
			},
			want: []string{"200 p1/1 Running", "150 /1 Suspended"},
		},
		{
			name:    "another namespace's and other objects' writes are not read",
			entries: []Entry{elsewhere, logBy("p1", 10, 20, 200)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, s := range States(tc.entries, "default")["c1"] {
				got = append(got, fmt.Sprintf("%d %s/%d %s", s.At.Sub(t0).Milliseconds(), s.Owner, s.Epoch, s.Phase))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
