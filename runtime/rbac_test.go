package runtime_test

import (
	"context"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/internal/testing/testworker"
)

// TestRuntimeNeedsNoMoreThanItsRole runs a runtime as a user that has only
// the generated runtime-role (config/runtime/role.yaml), bound in one
// namespace as the chart binds it, and checks it keeps its Lease, claims a
// conversation, writes its log and its status.
func TestRuntimeNeedsNoMoreThanItsRole(t *testing.T) {
	ctx := context.Background()
	role := env.GeneratedRole(t, "config/runtime/role.yaml", "tether-runtime-test")
	ns := newPod(t, "unused").Namespace
	const user = "runtime-under-its-role"
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tether-runtime"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if err := env.Client.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	// And, as the chart grants it cluster-wide, TokenReviews to check the
	// gateway's token.
	review := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "tether-runtime-tokenreview-test"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}}}}
	reviewBinding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "tether-runtime-tokenreview-test"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: review.Name},
		Subjects: binding.Subjects}
	for _, obj := range []client.Object{review, reviewBinding} {
		if err := env.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	cfg, err := env.UserConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	limited, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	// The role is all it has: nothing outside its namespace.
	if err := limited.List(ctx, &tetherv1alpha1.ConversationList{}, client.InNamespace("default")); !apierrors.IsForbidden(err) {
		t.Fatalf("listing another namespace: %v, want forbidden", err)
	}

	port := testworker.FreePort(t)
	testworker.CreateAgent(t, env.Client, ns, "approvals", port, tetherv1alpha1.StoreSpec{})
	testworker.Start(t, env, testworker.Options{Namespace: ns, Agent: "approvals", Name: "approvals-a", IP: "127.0.15.1", Port: port, Log: kubelog.New(limited), Config: cfg, Direct: limited})
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "refund"},
		Spec: tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
			Subjects: []string{"alice"}, InitialInput: "refund order 1234"},
	}
	if err := env.Client.Create(ctx, conv); err != nil {
		t.Fatal(err)
	}
	testworker.WaitConversation(t, env.Client, client.ObjectKeyFromObject(conv), "AwaitingInput, claimed under the runtime role", func(c *tetherv1alpha1.Conversation) bool {
		return c.Status.Phase == tetherv1alpha1.PhaseAwaitingInput && c.Status.LastSequence == 3
	})
}
