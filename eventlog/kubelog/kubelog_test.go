package kubelog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// namespaced creates each namespace the first time a log is claimed in it,
// as an installation would have them already.
type namespaced struct {
	*kubelog.Log
	created sync.Map
}

func (n *namespaced) Claim(ctx context.Context, k eventlog.Key, epoch int64) (eventlog.Bounds, error) {
	if _, done := n.created.LoadOrStore(k.Namespace, true); !done {
		err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: k.Namespace}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return eventlog.Bounds{}, err
		}
	}
	return n.Log.Claim(ctx, k, epoch)
}

func TestConformance(t *testing.T) {
	eventlogtest.Run(t, &namespaced{Log: kubelog.New(env.Client)}, eventlogtest.Options{
		FencingRounds: 8, Appenders: 4, NewOwner: &namespaced{Log: kubelog.New(env.Client)},
	})
}

// TestSealsChunksAndBoundsThem appends past several seals and checks that the
// log is split into chunk objects, reads across them, and keeps its head
// object small.
func TestSealsChunksAndBoundsThem(t *testing.T) {
	ctx := context.Background()
	log := &namespaced{Log: kubelog.New(env.Client)}
	key := eventlogtest.NewKey("seal")
	key.UID = "0b7c5a52-4f0e-4a57-9a1e-3f7a1c2d9e10"
	if _, err := log.Claim(ctx, key, 1); err != nil {
		t.Fatal(err)
	}
	total := 3*kubelog.SealEvents + 10
	for sent := 0; sent < total; sent += 50 {
		if _, err := log.Append(ctx, key, 1, eventlogtest.Events(min(50, total-sent), fmt.Sprint(sent))); err != nil {
			t.Fatal(err)
		}
	}
	var head tetherv1alpha1.ConversationLog
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, &head); err != nil {
		t.Fatal(err)
	}
	if len(head.Spec.Chunks) < 2 || len(head.Spec.Tail) >= kubelog.SealEvents {
		t.Fatalf("head has %d chunks and a tail of %d events", len(head.Spec.Chunks), len(head.Spec.Tail))
	}
	if len(head.OwnerReferences) != 1 || head.OwnerReferences[0].Kind != "Conversation" {
		t.Errorf("the log is not owned by its Conversation: %+v", head.OwnerReferences)
	}
	events, err := log.Read(ctx, key, 100, eventlog.MaxReadEvents)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != total-100 || events[0].Seq != 101 || events[len(events)-1].Seq != int64(total) {
		t.Fatalf("read %d events across chunks, from %d", len(events), events[0].Seq)
	}
	var chunks tetherv1alpha1.ConversationLogChunkList
	if err := env.Client.List(ctx, &chunks, client.InNamespace(key.Namespace)); err != nil {
		t.Fatal(err)
	}
	if len(chunks.Items) != len(head.Spec.Chunks) {
		t.Errorf("%d chunk objects for %d chunk refs", len(chunks.Items), len(head.Spec.Chunks))
	}
	// Trimming drops whole chunks; deleting removes every object.
	if err := log.Trim(ctx, key, 20); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.List(ctx, &chunks, client.InNamespace(key.Namespace)); err != nil {
		t.Fatal(err)
	}
	if len(chunks.Items) > 1 {
		t.Errorf("%d chunks left after keeping 20 events", len(chunks.Items))
	}
	if err := log.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.List(ctx, &chunks, client.InNamespace(key.Namespace)); err != nil || len(chunks.Items) != 0 {
		t.Fatalf("after Delete: %d chunks, %v", len(chunks.Items), err)
	}
}

func BenchmarkAppend(b *testing.B) {
	eventlogtest.BenchmarkAppend(b, &namespaced{Log: kubelog.New(env.Client)})
}

func BenchmarkAppendParallel(b *testing.B) {
	eventlogtest.BenchmarkAppendParallel(b, &namespaced{Log: kubelog.New(env.Client)})
}

func BenchmarkReadAfterN(b *testing.B) {
	eventlogtest.BenchmarkReadAfterN(b, &namespaced{Log: kubelog.New(env.Client)})
}
