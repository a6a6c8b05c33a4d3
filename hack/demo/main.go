// Command demo narrates Tether surviving the loss of a conversation's pod:
// it connects a client through the Ingress, shows the agent's question,
// deletes the pod that owns the conversation, shows the same socket get the
// question again from the new owner, answers it, and shows the conversation
// finish with every event delivered once. It runs inside the local
// cluster's network namespace (make demo runs it).
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	tetherclient "tether.dev/tether/client"
	"tether.dev/tether/protocol"
)

type demo struct {
	kubectl, kubeconfig, ns, name, releaseNS string
}

func main() {
	d := demo{}
	flag.StringVar(&d.kubectl, "kubectl", "kubectl", "kubectl binary.")
	flag.StringVar(&d.kubeconfig, "kubeconfig", "", "Administrator kubeconfig.")
	flag.StringVar(&d.ns, "namespace", "default", "Namespace of the conversation.")
	flag.StringVar(&d.name, "conversation", "", "Name of the conversation.")
	flag.StringVar(&d.releaseNS, "release-namespace", "tether-system", "Namespace Tether is installed in.")
	ingress := flag.String("ingress", "http://10.200.0.1", "The Ingress's address.")
	host := flag.String("host", "tether.local", "The Ingress's host.")
	flag.Parse()
	if err := d.run(*ingress, *host); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("\n>>> "+format+"\n", args...) }

func (d demo) run(ingress, host string) error {
	say("A client signs in as alice (a JWT checked by the gateway) and connects through the Ingress to %s/%s.", d.ns, d.name)
	secret, err := d.k("-n", d.releaseNS, "get", "secret", "tether-gateway-auth", "-o", "jsonpath={.data.hmac-secret}")
	if err != nil {
		return err
	}
	key, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return err
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "alice", Audience: jwt.ClaimStrings{"tether"}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(key)
	if err != nil {
		return err
	}
	url := strings.Replace(ingress, "http", "ws", 1) + protocol.ConversationPath(d.ns, d.name)
	c := tetherclient.Connect(context.Background(), tetherclient.Config{
		URL: url, Token: tetherclient.StaticToken(token), Header: http.Header{"Host": {host}},
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second,
	})
	defer func() { _ = c.Close() }()

	prompt, err := d.until(c, "the agent's question", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypePendingPrompt })
	if err != nil {
		return err
	}
	say("The agent waits on a human. The Conversation says so, and names the pod that owns it:")
	before, _ := d.k("-n", d.ns, "get", "conversation", d.name)
	fmt.Println(before)
	owner, err := d.k("-n", d.ns, "get", "conversation", d.name, "-o", "jsonpath={.status.owner.name}")
	if err != nil {
		return err
	}

	say("Now the pod %s is deleted, as a crash, an eviction or a lost node would take it.", owner)
	deleted := time.Now()
	if _, err := d.k("-n", d.ns, "delete", "pod", owner, "--wait=false"); err != nil {
		return err
	}
	again, err := d.until(c, "the question again", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypePendingPrompt })
	if err != nil {
		return err
	}
	say("%s after the deletion the same socket (connected %d time) holds the same question again (prompt %s, event %d; before: %s, %d).",
		time.Since(deleted).Round(time.Millisecond), c.Binds(), again.Prompt.ID, again.Seq, prompt.Prompt.ID, prompt.Seq)
	after, _ := d.k("-n", d.ns, "get", "conversation", d.name)
	say("The controller moved the conversation to a new pod, with a new fencing epoch:")
	fmt.Println(after)

	say("alice answers \"approve\".")
	if _, err := c.Answer(again.Prompt.ID, "approve"); err != nil {
		return err
	}
	if _, err := d.until(c, "the end", func(f protocol.ServerFrame) bool {
		return f.Type == protocol.TypeEvent && f.Event == protocol.EventFinished
	}); err != nil {
		return err
	}
	final, _ := d.k("-n", d.ns, "get", "conversation", d.name)
	say("The conversation finished:")
	fmt.Println(final)
	return nil
}

var seen []string

// until prints what the conversation says until want holds.
func (d demo) until(c *tetherclient.Client, what string, want func(protocol.ServerFrame) bool) (protocol.ServerFrame, error) {
	timeout := time.After(60 * time.Second)
	for {
		select {
		case f, ok := <-c.Frames():
			if !ok {
				return f, fmt.Errorf("the client stopped while waiting for %s: %w", what, c.Err())
			}
			show(f)
			if want(f) {
				return f, nil
			}
		case <-timeout:
			return protocol.ServerFrame{}, fmt.Errorf("no %s within 60 s", what)
		}
	}
}

func show(f protocol.ServerFrame) {
	switch f.Type {
	case protocol.TypeEvent:
		var text struct {
			Text string `json:"text"`
		}
		_ = json.Unmarshal(f.Data, &text)
		seen = append(seen, fmt.Sprint(f.Seq))
		fmt.Printf("    event %d %-17s %s\n", f.Seq, f.Event, text.Text)
	case protocol.TypePendingPrompt:
		fmt.Printf("    pending prompt: %q %v\n", f.Prompt.Text, f.Prompt.Options)
	case protocol.TypeStatus:
		fmt.Printf("    status: %s %s\n", f.Phase, f.Message)
	case protocol.TypeReplayComplete:
		fmt.Printf("    (replay complete; events delivered so far: %s)\n", strings.Join(seen, " "))
	case protocol.TypeAck:
		fmt.Printf("    ack: %s recorded as event %d\n", f.ID, f.Seq)
	case protocol.TypeError:
		fmt.Printf("    error %s: %s\n", f.Code, f.Message)
	}
}

func (d demo) k(args ...string) (string, error) {
	cmd := exec.Command(d.kubectl, append([]string{"--kubeconfig", d.kubeconfig}, args...)...) //nolint:gosec,noctx // the demo's own kubectl
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}
