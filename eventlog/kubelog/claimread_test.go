package kubelog_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/kubelog"
)

// BenchmarkClaimAMovedConversation: a new owner claims a conversation moved
// to it (two epochs on, as the manager moves one) and reads what it restores
// from: a snapshot and the 480 events after it, about the most a
// conversation has between two snapshots (the runtime takes one every 500
// events). The runtime waits for this before it serves the moved client.
// Run at the API server's own speed and with a delay added to each request,
// as a loaded API server answers: what counts then is how many requests
// wait on one another. It reports the requests made per claim.
func BenchmarkClaimAMovedConversation(b *testing.B) {
	for _, delay := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run("delay="+delay.String(), func(b *testing.B) {
			var requests atomic.Int64
			cfg := rest.CopyConfig(env.Config)
			cfg.QPS, cfg.Burst = -1, 0
			cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
				return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
					requests.Add(1)
					time.Sleep(delay)
					return rt.RoundTrip(r)
				})
			}
			c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			owner := &namespaced{Log: kubelog.New(env.Client)}
			key := eventlogtest.NewKey("bench-claim")
			epoch := int64(1)
			if _, err := owner.Claim(ctx, key, epoch); err != nil {
				b.Fatal(err)
			}
			appendEvents := func(n int) {
				for ; n > 0; n -= 20 {
					if _, err := owner.Append(ctx, key, epoch, eventlogtest.Events(min(n, 20), "bench")); err != nil {
						b.Fatal(err)
					}
				}
			}
			appendEvents(520)
			if err := owner.SaveSnapshot(ctx, key, epoch, eventlog.Snapshot{Seq: 520, Data: []byte(`{"state":"after 520 events"}`)}); err != nil {
				b.Fatal(err)
			}
			appendEvents(480)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				epoch += 2
				before := requests.Load()
				_, snap, events, err := kubelog.New(c).ClaimRead(ctx, key, epoch)
				if err != nil {
					b.Fatal(err)
				}
				if snap == nil || snap.Seq != 520 || len(events) != 480 {
					b.Fatalf("restored from a snapshot %+v and %d events, want the one after 520 and 480", snap, len(events))
				}
				b.ReportMetric(float64(requests.Load()-before), "requests/claim")
			}
		})
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestAClaimReadsTheWholeHistoryWithoutItsSnapshot: the snapshot the head
// names is read together with the events after it; if it cannot be read
// (its chunk is gone), the claim reads the history before it as well, and
// the new owner restores from all of it.
func TestAClaimReadsTheWholeHistoryWithoutItsSnapshot(t *testing.T) {
	ctx := context.Background()
	log := &namespaced{Log: kubelog.New(env.Client)}
	key := eventlogtest.NewKey("snapshot-gone")
	if _, err := log.Claim(ctx, key, 1); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := log.Append(ctx, key, 1, eventlogtest.Events(20, "before")); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.SaveSnapshot(ctx, key, 1, eventlog.Snapshot{Seq: 100, Data: []byte(`{"at":100}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := log.Append(ctx, key, 1, eventlogtest.Events(20, "after")); err != nil {
		t.Fatal(err)
	}
	_, snap, events, err := log.ClaimRead(ctx, key, 3)
	if err != nil || snap == nil || snap.Seq != 100 || len(events) != 20 || events[0].Seq != 101 {
		t.Fatalf("with the snapshot: %+v and %d events (%v), want the one after 100 and 101..120", snap, len(events), err)
	}
	var head tetherv1alpha1.ConversationLog
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, &head); err != nil || head.Spec.Snapshot == nil {
		t.Fatalf("the head %+v names no snapshot (%v)", head.Spec, err)
	}
	chunk := &tetherv1alpha1.ConversationLogChunk{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: head.Spec.Snapshot.Name}}
	if err := env.Client.Delete(ctx, chunk); err != nil {
		t.Fatal(err)
	}
	b, snap, events, err := log.ClaimRead(ctx, key, 5)
	if err != nil {
		t.Fatal(err)
	}
	if snap != nil || int64(len(events)) != b.LastSeq || events[0].Seq != 1 || events[len(events)-1].Seq != 120 {
		t.Fatalf("without the snapshot: %+v and %d events, want none and 1..120", snap, len(events))
	}
}
