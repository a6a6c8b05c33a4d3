package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/gatewayauth"
)

// awaitingConversation sets up an Agent, one worker and a conversation
// awaiting a human on it.
func awaitingConversation(t *testing.T, ip string) (*testworker.Worker, *tetherv1alpha1.Conversation) {
	t.Helper()
	ctx := context.Background()
	ns := newPod(t, "unused").Namespace
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{})
	w := testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: ip, Port: port, Log: kubelog.New(env.Client)})
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "refund"},
		Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
			Subjects: []string{"alice"}, InitialInput: "refund order 1234"},
	}
	if err := env.Client.Create(ctx, conv); err != nil {
		t.Fatal(err)
	}
	conv = testworker.WaitConversation(t, env.Client, client.ObjectKeyFromObject(conv), "AwaitingInput", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput
	})
	return w, conv
}

func TestInternalEndpointRefusesWhatItShould(t *testing.T) {
	w, conv := awaitingConversation(t, "127.0.13.1")
	url := func(name string) string {
		return fmt.Sprintf("ws://%s%s%s/%s", w.Addr, protocol.PathPrefix, conv.Namespace, name)
	}
	bearer := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	gateway := testworker.GatewayToken(t, env)
	for _, tc := range []struct {
		name   string
		url    string
		header http.Header
		status int
	}{
		{"no token", url("refund"), nil, http.StatusUnauthorized},
		{"wrong token", url("refund"), bearer("not-the-token"), http.StatusUnauthorized},
		// Valid tokens of the cluster that are not the gateway's: what a
		// tenant's pod, agent code or another namespace could present.
		{"the agent namespace's own ServiceAccount, for the runtime audience", url("refund"),
			bearer(env.ServiceAccountToken(t, conv.Namespace, "tether-runtime", gatewayauth.DefaultAudience)), http.StatusUnauthorized},
		{"a ServiceAccount named like the gateway's, in the agent namespace", url("refund"),
			bearer(env.ServiceAccountToken(t, conv.Namespace, testworker.GatewayServiceAccount, gatewayauth.DefaultAudience)), http.StatusUnauthorized},
		{"the gateway's ServiceAccount, for another audience", url("refund"),
			bearer(env.ServiceAccountToken(t, testworker.GatewayNamespace, testworker.GatewayServiceAccount, "https://kubernetes.default.svc")), http.StatusUnauthorized},
		{"a conversation this pod does not own", url("someone-elses"), bearer(gateway), http.StatusConflict},
		{"a negative cursor", url("refund") + "?after=-3", bearer(gateway), http.StatusBadRequest},
	} {
		d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 5 * time.Second}
		ws, resp, err := d.Dial(tc.url, tc.header)
		if ws != nil {
			_ = ws.Close()
		}
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != tc.status {
			t.Errorf("%s: %v, status %v; want %d", tc.name, err, resp, tc.status)
		}
	}
}

func TestBadFramesChangeNothing(t *testing.T) {
	w, conv := awaitingConversation(t, "127.0.13.2")
	ws := dial(t, w, conv.Namespace, conv.Name, conv.Status.LastSequence)
	next(t, ws, "the pending prompt", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypePendingPrompt })

	for _, tc := range []struct {
		frame string
		code  protocol.Code
		// id is the frame's id the error names (the sender forgets the
		// frame by it).
		id string
	}{
		{`{"type":"message","id":`, protocol.CodeBadFrame, ""},
		{`{"type":"launch_missiles"}`, protocol.CodeUnknownType, ""},
		{`{"type":"answer","id":"a-1","promptId":"approve-999","text":"approve"}`, protocol.CodePromptMismatch, "a-1"},
		{`{"type":"answer","id":"a-2","promptId":"` + conv.Status.Prompt.ID + `","text":"maybe"}`, protocol.CodeInvalidOption, "a-2"},
		{`{"type":"message","id":"m-1"}`, protocol.CodeBadFrame, "m-1"},
		{`{"type":"message","id":"m-2","text":"` + strings.Repeat("x", protocol.MaxTextBytes+1) + `"}`, protocol.CodeTooLarge, "m-2"},
		// Under the text limit, over the event limit once escaped: refused
		// for good, never "unavailable, send it again".
		{`{"type":"message","id":"m-3","text":"` + strings.Repeat("<", protocol.MaxTextBytes) + `"}`, protocol.CodeTooLarge, "m-3"},
	} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(tc.frame)); err != nil {
			t.Fatal(err)
		}
		got := next(t, ws, "an error frame", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeError })
		if protocol.Code(got.Code) != tc.code || got.ID != tc.id {
			t.Errorf("%.60s: error %+v, want %s for id %q", tc.frame, got, tc.code, tc.id)
		}
	}
	after := testworker.WaitConversation(t, env.Client, client.ObjectKeyFromObject(conv), "the same status", func(*tetherv1alpha1.Conversation) bool { return true })
	if after.Status.Phase != tetherv1alpha1.PhaseAwaitingInput || after.Status.LastSequence != conv.Status.LastSequence {
		t.Fatalf("bad frames changed the conversation: %+v", after.Status)
	}

	// A frame over the read limit ends the connection with 1009.
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"message","id":"big","text":"`+strings.Repeat("x", protocol.MaxClientFrameBytes)+`"}`)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
				t.Fatalf("after an oversized frame: %v, want close 1009", err)
			}
			break
		}
	}
}
