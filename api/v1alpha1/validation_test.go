package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/testenv"
)

const validAgent = `
apiVersion: tether.dev/v1alpha1
kind: Agent
metadata: {name: approvals}
spec:
  template:
    spec:
      containers: [{name: runtime, image: tether-runtime:dev}]
`

const validConversation = `
apiVersion: tether.dev/v1alpha1
kind: Conversation
metadata: {name: refund-1234}
spec:
  agentRef: {name: approvals}
  subjects: [alice]
`

// change edits an object created from a valid manifest; status says whether
// it goes through the status subresource.
type change struct {
	status bool
	edit   func(u map[string]any)
}

func spec(edit func(s map[string]any)) change {
	return change{edit: func(u map[string]any) { edit(u["spec"].(map[string]any)) }}
}

func status(s map[string]any) change {
	return change{status: true, edit: func(u map[string]any) { u["status"] = s }}
}

func awaiting(prompt map[string]any) map[string]any {
	return map[string]any{"phase": "AwaitingInput", "prompt": prompt, "lease": map[string]any{"epoch": int64(1)}}
}

func prompt(text string, options ...any) map[string]any {
	p := map[string]any{"id": "p1", "text": text, "askedAt": "2026-11-22T10:00:00Z"}
	if options != nil {
		p["options"] = options
	}
	return p
}

func manyStrings(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = strings.Repeat("x", i+1)
	}
	return out
}

func TestInvalidObjectsAreRejected(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name string
		// manifest is created; without changes the create itself must fail.
		manifest string
		// changes are applied in order after a successful create; all but
		// the last must succeed and the last must fail.
		changes []change
		// want is part of the message a user sees.
		want []string
	}{
		{
			name:     "conversation without an agent reference",
			manifest: strings.Replace(validConversation, "agentRef: {name: approvals}", "", 1),
			want:     []string{"spec.agentRef: Required value"},
		},
		{
			name:     "conversation agent reference changed after creation",
			manifest: validConversation,
			changes:  []change{spec(func(s map[string]any) { s["agentRef"] = map[string]any{"name": "other"} })},
			want:     []string{"spec.agentRef is immutable"},
		},
		{
			name:     "conversation agent reference is not a valid name",
			manifest: strings.Replace(validConversation, "{name: approvals}", "{name: Approvals_Team}", 1),
			want:     []string{"spec.agentRef.name", "should match"},
		},
		{
			name:     "conversation without subjects",
			manifest: strings.Replace(validConversation, "subjects: [alice]", "", 1),
			want:     []string{"spec.subjects: Required value"},
		},
		{
			name:     "conversation with too many subjects",
			manifest: strings.Replace(validConversation, "[alice]", "[a, b, c, d, e, f, g, h, i]", 1),
			want:     []string{"spec.subjects", "must have at most 8 items"},
		},
		{
			name:     "conversation with a duplicate subject",
			manifest: strings.Replace(validConversation, "[alice]", "[alice, alice]", 1),
			want:     []string{"spec.subjects[1]", "Duplicate value"},
		},
		{
			name:     "conversation initial input over the cap",
			manifest: validConversation + "  initialInput: " + strings.Repeat("y", tetherv1alpha1.MaxInitialInputLength+1) + "\n",
			want:     []string{"spec.initialInput", "Too long", "4096"},
		},
		{
			name:     "conversation initial input changed after creation",
			manifest: validConversation + "  initialInput: hello\n",
			changes:  []change{spec(func(s map[string]any) { s["initialInput"] = "goodbye" })},
			want:     []string{"spec.initialInput is immutable"},
		},
		{
			name:     "conversation initial input added after creation",
			manifest: validConversation,
			changes:  []change{spec(func(s map[string]any) { s["initialInput"] = "an afterthought" })},
			want:     []string{"spec.initialInput is immutable"},
		},
		{
			name:     "conversation initial input over the cap in bytes, not characters",
			manifest: validConversation + "  initialInput: " + strings.Repeat("€", tetherv1alpha1.MaxInitialInputLength/3+1) + "\n",
			want:     []string{"spec.initialInput must be at most 4096 bytes of UTF-8"},
		},
		{
			name:     "conversation with a negative TTL",
			manifest: validConversation + "  ttlSecondsAfterFinished: -1\n",
			want:     []string{"spec.ttlSecondsAfterFinished", "greater than or equal to 0"},
		},
		{
			name:     "conversation with an unknown phase",
			manifest: validConversation,
			changes:  []change{status(map[string]any{"phase": "Sleeping"})},
			want:     []string{"status.phase", `Unsupported value: "Sleeping"`},
		},
		{
			// Status names where the gateway dials: never a host name.
			name:     "conversation owner address that is a host name",
			manifest: validConversation,
			changes: []change{status(map[string]any{"phase": "Running",
				"owner": map[string]any{"name": "approvals-a", "uid": "u", "ip": "attacker.example", "port": 8080}})},
			want: []string{"status.owner.ip must be an IP address"},
		},
		{
			name:     "conversation prompt over the cap",
			manifest: validConversation,
			changes:  []change{status(awaiting(prompt(strings.Repeat("q", tetherv1alpha1.MaxPromptTextLength+1))))},
			want:     []string{"status.prompt.text", "Too long", "2048"},
		},
		{
			name:     "conversation prompt with too many options",
			manifest: validConversation,
			changes:  []change{status(awaiting(prompt("Approve?", manyStrings(tetherv1alpha1.MaxPromptOptions+1)...)))},
			want:     []string{"status.prompt.options", "must have at most 8 items"},
		},
		{
			name:     "conversation prompt option over the cap",
			manifest: validConversation,
			changes:  []change{status(awaiting(prompt("Approve?", "yes", strings.Repeat("n", tetherv1alpha1.MaxPromptOptionLength+1))))},
			want:     []string{"status.prompt.options[1]", "Too long"},
		},
		{
			name:     "conversation awaiting input without a prompt",
			manifest: validConversation,
			changes:  []change{status(map[string]any{"phase": "AwaitingInput"})},
			want:     []string{"status.prompt is required in phase AwaitingInput"},
		},
		{
			name:     "conversation epoch going backwards",
			manifest: validConversation,
			changes: []change{
				status(map[string]any{"phase": "Pending", "lease": map[string]any{"epoch": int64(5)}}),
				status(map[string]any{"phase": "Pending", "lease": map[string]any{"epoch": int64(4)}}),
			},
			want: []string{"status.lease.epoch must never decrease"},
		},
		{
			name:     "conversation last sequence going backwards",
			manifest: validConversation,
			changes: []change{
				status(map[string]any{"phase": "Running", "lastSequence": int64(10)}),
				status(map[string]any{"phase": "Running", "lastSequence": int64(9)}),
			},
			want: []string{"status.lastSequence must never decrease"},
		},
		{
			name:     "conversation condition message over the cap",
			manifest: validConversation,
			changes: []change{status(map[string]any{"conditions": []any{map[string]any{
				"type": "Ready", "status": "False", "reason": "AgentFailed", "lastTransitionTime": "2026-11-22T10:00:00Z",
				"message": strings.Repeat("m", tetherv1alpha1.MaxConditionMessageLength+1),
			}}})},
			want: []string{"condition messages are limited to 256 bytes"},
		},
		{
			name:     "agent with zero capacity",
			manifest: validAgent + "  conversationsPerPod: 0\n",
			want:     []string{"spec.conversationsPerPod", "greater than or equal to 1"},
		},
		{
			name:     "agent with a negative lease duration",
			manifest: validAgent + "  leaseDurationSeconds: -5\n",
			want:     []string{"spec.leaseDurationSeconds", "greater than or equal to 2"},
		},
		{
			name:     "agent with both a template and a selector",
			manifest: validAgent + "  selector: {matchLabels: {app: mine}}\n",
			want:     []string{"exactly one of spec.template"},
		},
		{
			name:     "agent with neither a template nor a selector",
			manifest: "apiVersion: tether.dev/v1alpha1\nkind: Agent\nmetadata: {name: empty}\nspec: {}\n",
			want:     []string{"exactly one of spec.template"},
		},
		{
			name: "agent with a selector and replicas",
			manifest: "apiVersion: tether.dev/v1alpha1\nkind: Agent\nmetadata: {name: mine}\n" +
				"spec: {selector: {matchLabels: {app: mine}}, replicas: 3}\n",
			want: []string{"spec.replicas applies only to an Agent with spec.template"},
		},
		{
			name: "agent container that is not in the template",
			manifest: "apiVersion: tether.dev/v1alpha1\nkind: Agent\nmetadata: {name: mine}\n" +
				"spec: {agentContainer: agent, template: {spec: {containers: [{name: other, image: x, command: [run]}]}}}\n",
			want: []string{"spec.agentContainer must name a container of spec.template that sets command"},
		},
		{
			name: "agent container without a command",
			manifest: "apiVersion: tether.dev/v1alpha1\nkind: Agent\nmetadata: {name: mine}\n" +
				"spec: {agentContainer: agent, template: {spec: {containers: [{name: agent, image: x}]}}}\n",
			want: []string{"spec.agentContainer must name a container of spec.template that sets command"},
		},
		{
			name:     "agent with negative replicas",
			manifest: validAgent + "  replicas: -1\n",
			want:     []string{"spec.replicas", "greater than or equal to 0"},
		},
		{
			name:     "agent with an unknown busy policy",
			manifest: validAgent + "  busyPolicy: Ignore\n",
			want:     []string{"spec.busyPolicy", `Unsupported value: "Ignore"`},
		},
		{
			name:     "agent with a redis store and no redis settings",
			manifest: validAgent + "  store: {type: redis}\n",
			want:     []string{"spec.store.redis must be set when spec.store.type is redis"},
		},
		{
			name:     "agent with a malformed redis address",
			manifest: validAgent + "  store: {type: redis, redis: {addresses: ['redis.example']}}\n",
			want:     []string{"spec.store.redis.addresses[0]", "should match"},
		},
		{
			name:     "agent with an unknown store",
			manifest: validAgent + "  store: {type: postgres}\n",
			want:     []string{"spec.store.type", `Unsupported value: "postgres"`},
		},
		{
			name:     "agent retention below the minimum",
			manifest: validAgent + "  store: {retention: {maxEvents: 10}}\n",
			want:     []string{"spec.store.retention.maxEvents", "greater than or equal to 100"},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			obj := fromYAML(t, ns, tc.manifest)
			obj.SetName(fmt.Sprintf("%s-%d", obj.GetName(), i))
			err := env.Client.Create(ctx, obj)
			for j, c := range tc.changes {
				if err != nil {
					t.Fatalf("setup step %d failed: %v", j, err)
				}
				err = applyChange(ctx, obj, c)
			}
			if err == nil {
				t.Fatalf("accepted; want rejection mentioning %q", tc.want)
			}
			if !isInvalid(err) {
				t.Fatalf("got %v; want a 422 Invalid", err)
			}
			t.Logf("rejected: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not mention %q", err.Error(), w)
				}
			}
		})
	}
}

func applyChange(ctx context.Context, obj *unstructured.Unstructured, c change) error {
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return err
	}
	c.edit(obj.Object)
	if c.status {
		return env.Client.Status().Update(ctx, obj)
	}
	return env.Client.Update(ctx, obj)
}

func TestValidObjectsAreAcceptedWithDefaults(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()

	agent := fromYAML(t, ns, validAgent)
	if err := env.Client.Create(ctx, agent); err != nil {
		t.Fatalf("valid Agent rejected: %v", err)
	}
	var gotAgent tetherv1alpha1.Agent
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(agent), &gotAgent); err != nil {
		t.Fatal(err)
	}
	wantDefaults := tetherv1alpha1.AgentSpec{
		ConversationsPerPod:  100,
		LeaseDurationSeconds: 10,
		BusyPolicy:           tetherv1alpha1.BusyPolicyEnqueue,
		MaxQueuedMessages:    16,
		RuntimePort:          7070,
		Store: tetherv1alpha1.StoreSpec{
			Type:      tetherv1alpha1.StoreKubernetes,
			Retention: tetherv1alpha1.RetentionSpec{MaxEvents: 10000},
		},
	}
	gotDefaults := gotAgent.Spec
	gotDefaults.Template = nil
	if diff := cmp.Diff(wantDefaults, gotDefaults); diff != "" {
		t.Errorf("Agent defaults (-want +got):\n%s", diff)
	}

	redisAgent := fromYAML(t, ns, `
apiVersion: tether.dev/v1alpha1
kind: Agent
metadata: {name: scaled}
spec:
  selector: {matchLabels: {app: my-agent}}
  conversationsPerPod: 500
  leaseDurationSeconds: 5
  idleSuspendSeconds: 600
  busyPolicy: Interrupt
  store:
    type: redis
    redis:
      addresses: ["10.0.0.1:6379", "redis-1.redis:6379"]
      passwordSecretRef: {name: redis, key: password}
      tls: {caSecretRef: {name: redis-ca, key: ca.crt}}
`)
	if err := env.Client.Create(ctx, redisAgent); err != nil {
		t.Fatalf("valid selector Agent with Redis rejected: %v", err)
	}

	conv := fromYAML(t, ns, validConversation+"  initialInput: Please refund order 1234\n  ttlSecondsAfterFinished: 3600\n")
	if err := env.Client.Create(ctx, conv); err != nil {
		t.Fatalf("valid Conversation rejected: %v", err)
	}
	// A full status in phase AwaitingInput, as the runtime writes it.
	var c tetherv1alpha1.Conversation
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(conv), &c); err != nil {
		t.Fatal(err)
	}
	c.Status = awaitingStatus()
	if err := env.Client.Status().Update(ctx, &c); err != nil {
		t.Fatalf("valid status rejected: %v", err)
	}
	// Subjects may change (a colleague joins), unlike the Agent reference.
	c.Spec.Subjects = append(c.Spec.Subjects, "bob")
	c.Spec.IdleSuspendSeconds = ptr.To[int32](300)
	if err := env.Client.Update(ctx, &c); err != nil {
		t.Fatalf("changing subjects rejected: %v", err)
	}
}

// TestSamplesAreValid applies the manifests in config/samples, which the
// README and docs point users at.
func TestSamplesAreValid(t *testing.T) {
	ns := newNamespace(t)
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tether_v1alpha1_agent.yaml", "tether_v1alpha1_conversation.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "config", "samples", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(context.Background(), fromYAML(t, ns, string(data))); err != nil {
			t.Errorf("config/samples/%s rejected: %v", name, err)
		}
	}
}
