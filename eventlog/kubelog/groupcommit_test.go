package kubelog

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/eventlog"
)

// TestTakeBatches: a writer takes itself and what waits at its epoch, in
// arrival order, within one append's limits, and leaves the rest queued in
// order; a key with nothing left keeps no entry.
func TestTakeBatches(t *testing.T) {
	big := strings.Repeat("x", eventlog.MaxBatchBytes/2)
	app := func(name string, epoch int64, n int, data string) *pendingAppend {
		events := make([]eventlog.Event, n)
		for i := range events {
			events[i] = eventlog.Event{Type: name}
			if data != "" {
				events[i].Data = []byte(`"` + data + `"`)
			}
		}
		return &pendingAppend{ctx: context.Background(), epoch: epoch, events: events, bytes: eventlog.BatchBytes(events)}
	}
	cases := []struct {
		name       string
		queue      []*pendingAppend
		lead       int // index in queue
		want, kept string
	}{
		{"alone", []*pendingAppend{app("a", 1, 1, "")}, 0, "[a]", "[]"},
		{"everything waiting, in arrival order", []*pendingAppend{app("a", 1, 1, ""), app("b", 1, 2, ""), app("c", 1, 1, "")}, 1, "[a b c]", "[]"},
		{"another epoch waits for its own write", []*pendingAppend{app("old", 1, 1, ""), app("a", 2, 1, ""), app("b", 2, 1, "")}, 1, "[a b]", "[old]"},
		{"events over one append's limit wait", []*pendingAppend{
			app("a", 1, eventlog.MaxBatchEvents-2, ""), app("b", 1, 3, ""), app("c", 1, 2, ""), app("d", 1, 1, ""),
		}, 0, "[a]", "[b c d]"},
		{"bytes over one append's limit wait", []*pendingAppend{app("a", 1, 1, big), app("b", 1, 1, big), app("c", 1, 1, "")}, 0, "[a]", "[b c]"},
		{"the writer's own always go", []*pendingAppend{app("a", 1, 1, big), app("b", 1, 1, big)}, 1, "[b]", "[a]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var q commitQueues
			key := types.NamespacedName{Namespace: "ns", Name: "c"}
			for _, p := range tc.queue {
				q.add(key, p)
			}
			batch := q.take(key, tc.queue[tc.lead])
			names := func(ps []*pendingAppend) string {
				var out []string
				for _, p := range ps {
					out = append(out, p.events[0].Type)
				}
				return fmt.Sprint(out)
			}
			if got := names(batch); got != tc.want {
				t.Errorf("batch %s, want %s", got, tc.want)
			}
			if got := names(q.queued[key]); got != tc.kept {
				t.Errorf("left queued %s, want %s", got, tc.kept)
			}
			if _, ok := q.queued[key]; ok != (tc.kept != "[]") {
				t.Errorf("entry kept: %v with %s left", ok, tc.kept)
			}
		})
	}
}
