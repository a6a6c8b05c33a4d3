package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"tether.dev/tether/protocol"
)

// TestTenantCredentialsAreRefused performs, on the real cluster, what a
// tenant's code could do with the credentials it can get: a token of the
// agent namespace's own ServiceAccount, or of another agent namespace's,
// minted for the runtime audience, is refused by a runtime (only the
// gateway's identity connects); another agent namespace's runtime
// credentials cannot read this namespace's conversation; a runtime
// ServiceAccount token bound to one worker pod cannot write another pod's
// Lease, another application's Lease, or the status of a conversation that
// pod does not own (the API server refuses, by the chart's policy).
func TestTenantCredentialsAreRefused(t *testing.T) {
	c := need(t)
	name := c.conversation(t, "tenant")
	r := c.connect(t, name)
	r.wait(t, "the prompt", 1, isPrompt)
	owner := c.field(t, name, ".status.owner.name")
	ip, port := c.field(t, name, ".status.owner.ip"), c.field(t, name, ".status.owner.port")

	// 1. The runtime refuses a token the namespace can mint for itself,
	// and one another tenant (the agent namespace team-b) can.
	// The attacker does not care whose certificate the runtime presents.
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 5 * time.Second,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the attacker's side
	for _, tenant := range []string{"default", "team-b"} {
		tenantToken := c.kubectl(t, "-n", tenant, "create", "token", "tether-runtime", "--audience", "tether-runtime", "--duration", "10m")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ws, resp, err := d.DialContext(ctx, "wss://"+ip+":"+port+protocol.ConversationPath("default", name),
			http.Header{"Authorization": {"Bearer " + tenantToken}})
		cancel()
		if ws != nil {
			_ = ws.Close()
		}
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s's runtime token at default's runtime: %v (%v), want 401", tenant, err, resp)
		}
	}
	// Nor can team-b's runtime credentials read default's conversation
	// from the API server.
	apiToken := c.kubectl(t, "-n", "team-b", "create", "token", "tether-runtime", "--duration", "10m")
	if out, err := c.run("kubectl", append(tokenOnly(t, c, apiToken), "-n", "default", "get", "conversation", name)...); err == nil || !strings.Contains(out, "forbidden") {
		t.Fatalf("team-b's runtime reading default's conversation: %v\n%s\nwant forbidden", err, out)
	}

	// 2. A runtime's pod-bound token cannot reach beyond its own pod.
	other := c.kubectl(t, "get", "pods", "-l", "tether.dev/agent=approvals", "-o",
		"jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}")
	var bystander string
	for _, p := range strings.Fields(other) {
		if p != owner {
			bystander = p
		}
	}
	if bystander == "" {
		t.Fatalf("the approvals Agent has one pod (%s); the test needs two", other)
	}
	bound := c.kubectl(t, "create", "token", "tether-runtime", "--bound-object-kind", "Pod", "--bound-object-name", bystander, "--duration", "10m")
	// kubectl with only that token: the administrator's kubeconfig would
	// authenticate with its client certificate first.
	asRuntime := tokenOnly(t, c, bound)
	// replace reads an object as the administrator, changes it, and
	// writes it back (PUT, the verb the runtime's role has) with the token.
	replaceOnce := func(kind, object, subresource string, change func(map[string]any)) (string, error) {
		var obj map[string]any
		if err := json.Unmarshal([]byte(c.kubectl(t, "get", kind, object, "-o", "json")), &obj); err != nil {
			t.Fatal(err)
		}
		change(obj)
		data, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		args := append(slices.Clone(asRuntime), "replace", "-f", "-")
		if subresource != "" {
			args = append(args, "--subresource", subresource)
		}
		cmd := exec.Command(filepath.Join(c.Bin, "kubectl"), args...) //nolint:gosec,noctx // the pinned kubectl
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// A write that raced the object's owner (a Lease renewed in between) is
	// refused for its resourceVersion before admission sees it: read again.
	replace := func(kind, object, subresource string, change func(map[string]any)) (out string, err error) {
		for range 5 {
			out, err = replaceOnce(kind, object, subresource, change)
			if err == nil || !strings.Contains(out, "Conflict") {
				break
			}
		}
		return out, err
	}
	for _, attack := range []struct {
		name  string
		write func() (string, error)
	}{
		{"keep the owner's Lease alive", func() (string, error) {
			return replace("lease", owner, "", func(o map[string]any) {
				o["spec"].(map[string]any)["renewTime"] = time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
			})
		}},
		{"delete the owner's Lease", func() (string, error) {
			return c.run("kubectl", append(slices.Clone(asRuntime), "delete", "lease", owner)...)
		}},
		{"write the status of a conversation it does not own", func() (string, error) {
			return replace("conversation", name, "status", func(o map[string]any) {
				o["status"].(map[string]any)["phase"] = "Failed"
			})
		}},
	} {
		out, err := attack.write()
		if err == nil || !strings.Contains(out, "ValidatingAdmissionPolicy") {
			t.Errorf("%s with a token bound to %s: %v\n%s\nwant refused by the admission policy", attack.name, bystander, err, out)
		}
	}
	r.finish(t, c.field(t, name, ".status.prompt.id"))
}

// tokenOnly is kubectl's arguments to reach the cluster with token and no
// other credential.
func tokenOnly(t *testing.T, c *cluster, token string) []string {
	t.Helper()
	server := c.kubectl(t, "config", "view", "--raw", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
	ca, err := base64.StdEncoding.DecodeString(c.kubectl(t, "config", "view", "--raw", "--minify", "--flatten", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, empty := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--kubeconfig", empty, "--server", server, "--certificate-authority", caFile, "--token", token, "-n", "default"}
}
