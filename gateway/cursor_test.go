package gateway_test

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	tetherclient "tether.dev/tether/client"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
)

func connectAt(t *testing.T, url string, cursor protocol.Cursor) (*tetherclient.Client, *recorder) {
	t.Helper()
	c := tetherclient.Connect(context.Background(), tetherclient.Config{
		URL: url, Token: tetherclient.StaticToken(token(t, "alice")), After: cursor.After, Log: cursor.Log,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c, record(c)
}

// TestCursorAheadOfTheLog: a client whose cursor is past the end of the
// log (a store restored from an older copy, a bug) is told so by a reset
// frame, and the Go client starts over from the first event by itself: it
// sees the whole history, the prompt, and the events of its answer.
func TestCursorAheadOfTheLog(t *testing.T) {
	ns := awaitingOnOneRuntime(t, "127.0.27.1", "ahead")
	g := startGateway(t)
	c, r := connectAt(t, g.url(ns, "ahead"), protocol.Cursor{After: 100000})
	reset := r.wait(t, "a reset frame", 1, isType(protocol.TypeReset))
	if reset.Code != protocol.ResetCursorAhead || reset.Log == "" {
		t.Fatalf("reset %+v, want code %s and the log's identity", reset, protocol.ResetCursorAhead)
	}
	prompt := r.wait(t, "the prompt", 1, isType(protocol.TypePendingPrompt))
	if c.LastSeq() != 3 || c.Log() != reset.Log || c.Resets() != 1 {
		t.Fatalf("after the reset the client is at %d of %q (%d resets), want 3 of %q", c.LastSeq(), c.Log(), c.Resets(), reset.Log)
	}
	if _, err := c.Answer(prompt.Prompt.ID, "approve"); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "finished", 1, isFinished)
	wantEvents(t, r)
}

// TestCursorFromADeletedConversation: a conversation is deleted and created
// again under the same name; a client that resumes with its cursor into
// the old history (same sequence numbers, another log) is told so, and the
// Go client replays the new history from its start.
func TestCursorFromADeletedConversation(t *testing.T) {
	ns := awaitingOnOneRuntime(t, "127.0.27.2", "again")
	g := startGateway(t)
	old, r := connect(t, g.url(ns, "again"))
	r.wait(t, "the prompt", 1, isType(protocol.TypePendingPrompt))
	cursor := protocol.Cursor{After: old.LastSeq(), Log: old.Log()}
	if cursor.After != 3 || cursor.Log == "" {
		t.Fatalf("the first client is at %+v, want seq 3 of a named log", cursor)
	}
	_ = old.Close()

	ctx := context.Background()
	conv := &tetherv1alpha1.Conversation{}
	if err := env.Client.Get(ctx, keyOf(ns, "again"), conv); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, conv); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !apierrors.IsNotFound(env.Client.Get(ctx, keyOf(ns, "again"), &tetherv1alpha1.Conversation{})) {
		if time.Now().After(deadline) {
			t.Fatal("the conversation was not deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// envtest runs no garbage collector: remove the old log as it would.
	if err := kubeLog().Delete(ctx, eventlog.Key{Namespace: ns, Name: "again"}); err != nil {
		t.Fatal(err)
	}
	key := createConversation(t, ns, "again")
	testworker.WaitConversation(t, env.Client, key, "the new conversation AwaitingInput", awaiting("approvals-a"))

	c, r2 := connectAt(t, g.url(ns, "again"), cursor)
	reset := r2.wait(t, "a reset frame", 1, isType(protocol.TypeReset))
	if reset.Code != protocol.ResetLogChanged || reset.Log == cursor.Log {
		t.Fatalf("reset %+v, want code %s and a new log", reset, protocol.ResetLogChanged)
	}
	prompt := r2.wait(t, "the prompt", 1, isType(protocol.TypePendingPrompt))
	if got := r2.events(); len(got) != 3 || got[0] != "1:user_message" {
		t.Fatalf("after the reset the client saw %v, want the new history from seq 1", got)
	}
	if _, err := c.Answer(prompt.Prompt.ID, "approve"); err != nil {
		t.Fatal(err)
	}
	r2.wait(t, "finished", 1, isFinished)
	wantEvents(t, r2)
}

func keyOf(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
