package chart

import (
	"context"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsyaml "sigs.k8s.io/yaml"

	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testenv"
)

// TestManagerPodWritesAreConfinedByTheAPIServer installs the chart's
// policy on the manager's pod writes in a real API server and acts as the
// manager's ServiceAccount with a role that may patch any pod: it may set an
// Agent pod's deletion cost and drain mark, and nothing else of any pod.
func TestManagerPodWritesAreConfinedByTheAPIServer(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	manager := ""
	for _, o := range render(t) {
		if o.Kind == "ServiceAccount" && strings.HasSuffix(o.Metadata.Name, "-manager") {
			manager = o.Metadata.Name
		}
	}
	for _, o := range render(t, "-s", "templates/manager-policy.yaml") {
		u := &unstructured.Unstructured{}
		if err := sigsyaml.Unmarshal(o.raw, &u.Object); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(ctx, u); err != nil {
			t.Fatalf("creating %s %s: %v", o.Kind, o.Metadata.Name, err)
		}
	}
	const ns, team = "tether-system", "team-a"
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: manager}}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}}, sa,
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "patch-pods"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "patch"}}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "patch-pods"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "patch-pods"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: manager}}},
	} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(name string, labels, annotations map[string]string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: name, Labels: labels, Annotations: annotations},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime"}}}}
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	agentPod := map[string]string{"tether.dev/agent": "approvals"}
	worker, other := pod("worker", agentPod, map[string]string{"team": "payments"}), pod("other", map[string]string{"app": "web"}, nil)
	bare := pod("bare", agentPod, nil) // a Deployment's pod: no annotations
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}
	if err := env.Client.SubResource("token").Create(ctx, sa, req); err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = req.Status.Token
	asManager, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	// A policy takes effect a moment after it is created.
	await.Until(t, 30*time.Second, "the policy refusing a write to a pod of no Agent", func() bool {
		return apierrors.IsForbidden(asManager.Patch(ctx, other.DeepCopy(), client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"annotations":{"probe":"x"}}}`))))
	})
	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		patch string
		ok    bool
	}{
		{"the deletion cost of an Agent pod with no annotations", bare, `{"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"1"}}}`, true},
		{"an Agent pod's deletion cost", worker, `{"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"2"}}}`, true},
		{"an Agent pod's deletion cost again", worker, `{"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"0"}}}`, true},
		{"an Agent pod drained", worker, `{"metadata":{"annotations":{"tether.dev/drain":"scale-down since 2026-12-02T12:00:00Z"}}}`, true},
		{"an Agent pod's drain called off", worker, `{"metadata":{"annotations":{"tether.dev/drain":null}}}`, true},
		{"a pod of no Agent drained", other, `{"metadata":{"annotations":{"tether.dev/drain":"x"}}}`, false},
		{"another annotation of an Agent pod", worker, `{"metadata":{"annotations":{"team":"ops"}}}`, false},
		{"an Agent pod's labels", worker, `{"metadata":{"labels":{"tether.dev/agent":"other"}}}`, false},
		{"an Agent pod's spec", worker, `{"spec":{"activeDeadlineSeconds":5}}`, false},
		{"the deletion cost of a pod of no Agent", other, `{"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"9"}}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := asManager.Patch(ctx, tc.pod.DeepCopy(), client.RawPatch("application/merge-patch+json", []byte(tc.patch)))
			switch {
			case tc.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !tc.ok && !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err):
				t.Fatalf("want a refusal, got %v", err)
			}
		})
	}
}
