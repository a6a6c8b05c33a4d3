package gateway_test

import (
	"bytes"
	"crypto/tls"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/gateway"
	"tether.dev/tether/internal/testing/testcerts"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/internal/tlsfiles"
	"tether.dev/tether/protocol"
)

// wire records every byte a listener's connections read and write: what an
// observer of the network between gateway and runtime sees.
type wire struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *wire) wrap(l net.Listener) net.Listener { return &wireListener{Listener: l, w: w} }

func (w *wire) saw(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Contains(w.buf.Bytes(), []byte(s))
}

func (w *wire) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Len()
}

type wireListener struct {
	net.Listener
	w *wire
}

func (l *wireListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wireConn{Conn: c, w: l.w}, nil
}

type wireConn struct {
	net.Conn
	w *wire
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.w.mu.Lock()
	c.w.buf.Write(p[:n])
	c.w.mu.Unlock()
	return n, err
}

func (c *wireConn) Write(p []byte) (int, error) {
	c.w.mu.Lock()
	c.w.buf.Write(p)
	c.w.mu.Unlock()
	return c.Conn.Write(p)
}

// servingTLS is a runtime's TLS with a certificate from ca for name.
func servingTLS(t *testing.T, ca *testcerts.CA, name string) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	ca.WriteKeyPair(t, dir, name)
	pair, err := tlsfiles.NewKeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{GetCertificate: pair.GetCertificate, MinVersion: tls.VersionTLS13}
}

// TestHopIsEncrypted: with the runtimes' CA, the gateway dials owners over
// TLS and checks the certificate names the conversation's namespace. On
// the wire between them there is no token, subject or text in the clear.
// An owner with a certificate of another namespace (the right CA, the
// wrong name), one of another CA, or one serving plain WebSocket is never
// talked to: the client is held, and no token crosses.
func TestHopIsEncrypted(t *testing.T) {
	ca := testcerts.NewCA(t, "tether-runtime-ca")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	ca.WriteCA(t, caFile)
	pool, err := tlsfiles.NewCAPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, func(c *gateway.Config) { c.RuntimeCA = pool; c.HoldTimeout = 2 * time.Second })

	// A runtime of ns serving ns's certificate: served, and sealed.
	ns := namespace(t)
	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{})
	var hop wire
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.23.1", Port: port,
		Log: kubeLog(), TLS: servingTLS(t, ca, protocol.RuntimeServerName(ns)), Wrap: hop.wrap})
	key := createConversation(t, ns, "sealed")
	testworker.WaitConversation(t, env.Client, key, "AwaitingInput", awaiting("approvals-a"))
	ws, _, err := dialRaw(t, g.url(ns, key.Name), bearer(token(t, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	var prompt protocol.ServerFrame
	for prompt.Type != protocol.TypePendingPrompt {
		if prompt, err = readFrame(t, ws); err != nil {
			t.Fatalf("waiting for the prompt over TLS: %v", err)
		}
	}
	_ = ws.Close()
	upstream := testworker.GatewayToken(t, env)
	for _, secret := range []string{upstream[:40], "Bearer", "alice", prompt.Prompt.Text, "refund order"} {
		if hop.saw(secret) {
			t.Errorf("%q crossed the hop in the clear", secret)
		}
	}
	t.Logf("%d bytes crossed the hop, none of them the token, the subject or the text", hop.len())

	for _, tc := range []struct {
		name string
		tls  func(ns string) *tls.Config
	}{
		{"another namespace's certificate", func(string) *tls.Config { return servingTLS(t, ca, protocol.RuntimeServerName(ns)) }},
		{"another CA's certificate", func(other string) *tls.Config {
			return servingTLS(t, testcerts.NewCA(t, "impostor"), protocol.RuntimeServerName(other))
		}},
		{"plain WebSocket", func(string) *tls.Config { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := namespace(t)
			port := testworker.FreePort(t)
			testworker.CreateAgent(t, env.Client, other, "approvals", port, tetherv1alpha1.StoreSpec{})
			var hop wire
			testworker.Start(t, env, testworker.Options{Namespace: other, Agent: "approvals", Name: "approvals-a", IP: "127.0.23.2", Port: port,
				Log: kubeLog(), TLS: tc.tls(other), Wrap: hop.wrap})
			key := createConversation(t, other, "impostor")
			testworker.WaitConversation(t, env.Client, key, "AwaitingInput", awaiting("approvals-a"))
			ws, _, err := dialRaw(t, g.url(other, key.Name), bearer(token(t, "alice")))
			if err != nil {
				t.Fatal(err)
			}
			if code := closeCode(t, ws); code != protocol.CloseHoldTimeout {
				t.Fatalf("close %d, want %d (held, never served by that owner)", code, protocol.CloseHoldTimeout)
			}
			if hop.len() == 0 {
				t.Fatal("the gateway never tried the owner")
			}
			if hop.saw("Bearer") || hop.saw(upstream[:40]) {
				t.Fatal("the gateway's token reached an owner it could not verify")
			}
		})
	}
}
