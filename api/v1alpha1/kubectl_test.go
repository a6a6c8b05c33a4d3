package v1alpha1_test

import (
	"context"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// These tests drive the real kubectl built by hack/tools, as a user would.

func TestKubectlScaleAgent(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	kubeconfig, err := env.Kubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	agent := fromYAML(t, ns, validAgent)
	if err := env.Client.Create(ctx, agent); err != nil {
		t.Fatal(err)
	}

	out, err := env.Kubectl(kubeconfig, "-n", ns, "scale", "agent", "approvals", "--replicas=3")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "scaled") {
		t.Errorf("kubectl scale said %q", out)
	}
	var a tetherv1alpha1.Agent
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(agent), &a); err != nil {
		t.Fatal(err)
	}
	if a.Spec.Replicas == nil || *a.Spec.Replicas != 3 {
		t.Fatalf("spec.replicas = %v after kubectl scale --replicas=3", a.Spec.Replicas)
	}

	// The scale subresource reports the selector the controller publishes,
	// which is what a HorizontalPodAutoscaler reads.
	a.Status.Replicas = 3
	a.Status.Selector = "tether.dev/agent=approvals"
	if err := env.Client.Status().Update(ctx, &a); err != nil {
		t.Fatal(err)
	}
	out, err = env.Kubectl(kubeconfig, "-n", ns, "get", "--raw",
		"/apis/tether.dev/v1alpha1/namespaces/"+ns+"/agents/approvals/scale")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind":"Scale"`, `"replicas":3`, `"selector":"tether.dev/agent=approvals"`} {
		if !strings.Contains(out, want) {
			t.Errorf("scale subresource %s lacks %s", out, want)
		}
	}

	// Scaling below zero is refused by the Agent's own validation.
	if out, err := env.Kubectl(kubeconfig, "-n", ns, "scale", "agent", "approvals", "--replicas=-1"); err == nil {
		t.Errorf("kubectl scale --replicas=-1 succeeded: %s", out)
	}
}

func TestKubectlGetAndExplain(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	kubeconfig, err := env.Kubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conv := fromYAML(t, ns, validConversation)
	if err := env.Client.Create(ctx, conv); err != nil {
		t.Fatal(err)
	}
	var c tetherv1alpha1.Conversation
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(conv), &c); err != nil {
		t.Fatal(err)
	}
	c.Status = awaitingStatus()
	if err := env.Client.Status().Update(ctx, &c); err != nil {
		t.Fatal(err)
	}

	// The short name works and the prompt is on the line a person reads.
	out, err := env.Kubectl(kubeconfig, "-n", ns, "get", "conv")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("kubectl get conv printed %d lines:\n%s", len(lines), out)
	}
	for _, want := range []string{"NAME", "AGENT", "PHASE", "OWNER", "PROMPT", "RESCHEDULES", "AGE"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header %q lacks %s", lines[0], want)
		}
	}
	for _, want := range []string{"refund-1234", "approvals", "AwaitingInput", "approvals-7d9f-x2k4", "Refund 120 EUR to order 1234?"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %s", lines[1], want)
		}
	}

	// A runtime lists only its own conversations by the owner field.
	for selector, want := range map[string]bool{
		"status.owner.name=approvals-7d9f-x2k4":                   true,
		"status.owner.name=some-other-pod":                        false,
		"status.phase=AwaitingInput,spec.agentRef.name=approvals": true,
	} {
		out, err := env.Kubectl(kubeconfig, "-n", ns, "get", "conv", "--field-selector", selector, "-o", "name")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(out, "conversation.tether.dev/refund-1234"); got != want {
			t.Errorf("--field-selector %s listed %q; want the conversation listed: %v", selector, out, want)
		}
	}

	// kubectl explain reads the field documentation from the CRD schema.
	out, err = env.Kubectl(kubeconfig, "explain", "conversation.status.prompt")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"prompt is the question the agent is waiting on", "askedAt", "options"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl explain conversation.status.prompt lacks %q:\n%s", want, out)
		}
	}
}
