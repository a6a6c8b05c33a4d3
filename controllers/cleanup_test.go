package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/controllers"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/redislog"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testredis"
)

// TestDeletingAConversationDeletesItsRedisLog: the transcript does not
// outlive the Conversation, and a store that is down holds the deletion
// until it is back rather than leaving the transcript behind.
func TestDeletingAConversationDeletesItsRedisLog(t *testing.T) {
	server := testredis.Start(t)
	ctx := context.Background()
	ns := newNamespace(t)
	newSelectorAgent(t, ns, "redis-backed", 10, func(a *tetherv1alpha1.Agent) {
		a.Spec.Store = tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreRedis, Redis: &tetherv1alpha1.RedisStoreSpec{Addresses: []string{server.Addr}}}
	})
	startPod(t, ns, "redis-backed", "redis-backed-a", "127.0.10.1", 300)
	conv := newConversation(t, ns, "secret-plans", "redis-backed")
	owned := waitOwned(t, conv)
	if !controllerutil.ContainsFinalizer(owned, controllers.LogFinalizer) {
		t.Fatalf("finalizers %v lack %s", owned.Finalizers, controllers.LogFinalizer)
	}

	// The owner writes the transcript, as the runtime would.
	log, err := redislog.New(redislog.Options{Addrs: []string{server.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = log.Close() }()
	key := eventlog.Key{Namespace: ns, Name: conv.Name, UID: string(owned.UID)}
	if _, err := log.Claim(ctx, key, epochOf(owned)); err != nil {
		t.Fatal(err)
	}
	if _, err := log.Append(ctx, key, epochOf(owned), eventlogtest.Events(5, "transcript")); err != nil {
		t.Fatal(err)
	}

	server.Stop()
	if err := k8s.Delete(ctx, owned); err != nil {
		t.Fatal(err)
	}
	await.Stays(t, time.Second, "the conversation held by its finalizer while its store is down", func() bool {
		var held tetherv1alpha1.Conversation
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(conv), &held); err != nil {
			return false
		}
		return controllerutil.ContainsFinalizer(&held, controllers.LogFinalizer)
	})
	eventually(t, 5*time.Second, "a LogNotDeleted event", func() (bool, string) {
		notes := events(t, conv, "LogNotDeleted")
		return len(notes) > 0, fmt.Sprint(notes)
	})

	server.Restart()
	eventually(t, 30*time.Second, "the conversation gone once the store is back", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(conv), &tetherv1alpha1.Conversation{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	if _, err := log.Bounds(ctx, key); !errors.Is(err, eventlog.ErrUnknownConversation) {
		t.Fatalf("the log outlived its conversation: %v", err)
	}
}
