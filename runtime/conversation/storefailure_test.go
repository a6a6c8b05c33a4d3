package conversation_test

import (
	"testing"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/protocol"
)

// TestAStoreFailureUnderATurnRunsItAgain: the store failing while a turn
// records its question (the API server restarting) is not the agent's
// failure: the turn runs again once the store is back and asks its
// question, and the conversation is not failed.
func TestAStoreFailureUnderATurnRunsItAgain(t *testing.T) {
	log := &eventlogtest.FailingOnce{Log: memory.New(), Type: protocol.EventPrompt}
	key := eventlogtest.NewKey("store-failure")
	c, st := start(t, log, key, 1, approval)
	submit(t, c, message("m-1", "refund 1234"))
	waitFor(t, "AwaitingInput", awaiting(st))
	if got := st.last(); got.Phase != tetherv1alpha1.PhaseAwaitingInput || got.Prompt == nil {
		t.Fatalf("status %+v", got)
	}
	for _, kind := range types(t, log, key) {
		if kind == protocol.EventFailed {
			t.Fatalf("the conversation failed: %v", types(t, log, key))
		}
	}
}
