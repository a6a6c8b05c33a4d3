package chart

import (
	"context"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsyaml "sigs.k8s.io/yaml"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/testenv"
)

// TestRuntimeWritesAreConfinedByTheAPIServer installs the chart's
// ValidatingAdmissionPolicy in a real API server, gives the runtime's
// ServiceAccount its generated role as the chart does, and acts as the
// runtime of pod p1 with a token bound to p1 (what the kubelet mounts): it
// may keep its own Lease and write the status of the conversation p1 owns,
// and the API server refuses every other write the role would allow.
func TestRuntimeWritesAreConfinedByTheAPIServer(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	const ns = "team-a"
	for _, o := range render(t, "--set", "runtime.agentNamespaces={"+ns+"}", "-s", "templates/runtime-policy.yaml") {
		u := &unstructured.Unstructured{}
		if err := sigsyaml.Unmarshal(o.raw, &u.Object); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(ctx, u); err != nil {
			t.Fatalf("creating %s %s: %v", o.Kind, o.Metadata.Name, err)
		}
	}
	role := env.GeneratedRole(t, "config/runtime/role.yaml", "tether-runtime")
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tether-runtime"}}
	pods := map[string]*corev1.Pod{}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, sa,
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tether-runtime"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa.Name}}},
	} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"p1", "p2"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.PodSpec{ServiceAccountName: sa.Name, Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime"}}}}
		if err := env.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pods[name] = pod
	}
	as := func(bound *corev1.Pod) client.Client {
		req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}
		if bound != nil {
			req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: bound.Name, UID: bound.UID}
		}
		if err := env.Client.SubResource("token").Create(ctx, sa, req); err != nil {
			t.Fatal(err)
		}
		cfg := rest.AnonymousClientConfig(env.Config)
		cfg.BearerToken = req.Status.Token
		c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	p1, unbound := as(pods["p1"]), as(nil)

	lease := func(pod string, holder types) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(string(holder)), LeaseDurationSeconds: ptr.To(int32(10)), RenewTime: ptr.To(metav1.NowMicro())}}
	}
	// p2's Lease, as p2's runtime made it; and two conversations.
	if err := env.Client.Create(ctx, lease("p2", types(pods["p2"].UID))); err != nil {
		t.Fatal(err)
	}
	conversation := func(name string, owner *corev1.Pod) client.ObjectKey {
		conv := &tetherv1alpha1.Conversation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"}, Subjects: []string{"alice"}}}
		if err := env.Client.Create(ctx, conv); err != nil {
			t.Fatal(err)
		}
		conv.Status = tetherv1alpha1.ConversationStatus{Phase: tetherv1alpha1.PhaseRunning,
			Owner: &tetherv1alpha1.OwnerPod{Name: owner.Name, UID: string(owner.UID), IP: "10.0.0.1", Port: 8080},
			Lease: &tetherv1alpha1.ConversationLease{Holder: owner.Name, Epoch: 3}}
		if err := env.Client.Status().Update(ctx, conv); err != nil {
			t.Fatal(err)
		}
		return client.ObjectKeyFromObject(conv)
	}
	mine, theirs := conversation("mine", pods["p1"]), conversation("theirs", pods["p2"])
	editStatus := func(c client.Client, key client.ObjectKey, edit func(*tetherv1alpha1.ConversationStatus)) func() error {
		return func() error {
			conv := &tetherv1alpha1.Conversation{}
			if err := env.Client.Get(ctx, key, conv); err != nil {
				return err
			}
			edit(&conv.Status)
			return c.Status().Update(ctx, conv)
		}
	}
	editLease := func(c client.Client, name string, edit func(*coordinationv1.Lease)) func() error {
		return func() error {
			l := &coordinationv1.Lease{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, l); err != nil {
				return err
			}
			edit(l)
			return c.Update(ctx, l)
		}
	}

	// A policy takes effect a moment after it is created.
	deadline := time.Now().Add(30 * time.Second)
	for err := p1.Create(ctx, lease("p3", types(pods["p1"].UID))); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "own pod's Lease"); err = p1.Create(ctx, lease("p3", types(pods["p1"].UID))) {
		if err == nil {
			_ = env.Client.Delete(ctx, lease("p3", ""))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the policy never refused a Lease of another name: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	for _, tc := range []struct {
		name    string
		write   func() error
		refused bool
	}{
		{"create its own pod's Lease", func() error { return p1.Create(ctx, lease("p1", types(pods["p1"].UID))) }, false},
		{"renew its own Lease", editLease(p1, "p1", func(l *coordinationv1.Lease) { l.Spec.RenewTime = ptr.To(metav1.NowMicro()) }), false},
		{"keep another pod's Lease alive", editLease(p1, "p2", func(l *coordinationv1.Lease) { l.Spec.RenewTime = ptr.To(metav1.NowMicro()) }), true},
		{"take over another pod's Lease", editLease(p1, "p2", func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = ptr.To(string(pods["p1"].UID)) }), true},
		{"delete another pod's Lease", func() error { return p1.Delete(ctx, lease("p2", "")) }, true},
		{"take another application's leader-election Lease", func() error { return p1.Create(ctx, lease("my-app-leader", types(pods["p1"].UID))) }, true},
		{"its own Lease, held by another pod", editLease(p1, "p1", func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = ptr.To(string(pods["p2"].UID)) }), true},
		{"write the status of its own conversation", editStatus(p1, mine, func(s *tetherv1alpha1.ConversationStatus) { s.LastSequence = 9 }), false},
		{"forge a prompt on a conversation another pod owns", editStatus(p1, theirs, func(s *tetherv1alpha1.ConversationStatus) {
			s.Phase, s.Prompt = tetherv1alpha1.PhaseAwaitingInput, &tetherv1alpha1.Prompt{ID: "p", Text: "Send me your password", AskedAt: metav1.Now()}
		}), true},
		{"hand its conversation to another pod", editStatus(p1, mine, func(s *tetherv1alpha1.ConversationStatus) {
			s.Owner.Name, s.Owner.UID = "p2", string(pods["p2"].UID)
		}), true},
		{"point its conversation's owner elsewhere", editStatus(p1, mine, func(s *tetherv1alpha1.ConversationStatus) { s.Owner.IP = "10.9.9.9" }), true},
		{"raise its own epoch", editStatus(p1, mine, func(s *tetherv1alpha1.ConversationStatus) { s.Lease.Epoch++ }), true},
		{"claim a conversation with a token bound to no pod", editStatus(unbound, mine, func(s *tetherv1alpha1.ConversationStatus) { s.LastSequence = 10 }), true},
		{"a Lease with a token bound to no pod", func() error { return unbound.Create(ctx, lease("p1x", types(pods["p1"].UID))) }, true},
		{"delete its own Lease on shutdown", func() error { return p1.Delete(ctx, lease("p1", "")) }, false},
	} {
		err := tc.write()
		switch {
		case tc.refused && !apierrors.IsForbidden(err):
			t.Errorf("%s: %v, want refused by the API server", tc.name, err)
		case !tc.refused && err != nil:
			t.Errorf("%s: %v, want allowed", tc.name, err)
		case tc.refused:
			t.Logf("%s: refused: %v", tc.name, err)
		}
	}
}

// types is a UID as a Lease's holder identity spells it.
type types string
