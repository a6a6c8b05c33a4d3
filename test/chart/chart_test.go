// Package chart checks the Helm chart as helm renders it: lint, the
// restricted Pod Security profile on every pod, least-privilege RBAC equal
// to the roles generated from the code, CRDs equal to config/crd, no secret
// shared with agent namespaces, and values the schema refuses.
package chart

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"tether.dev/tether/internal/testing/testenv"
)

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("helm not found at %s (KUBEBUILDER_ASSETS is the tools directory): %v", bin, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return errOut.String(), err
	}
	return out.String(), nil
}

func chartDir(t *testing.T) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "charts", "tether")
}

// object is one rendered manifest.
type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	raw []byte
}

func render(t *testing.T, args ...string) []object {
	t.Helper()
	out, err := helm(t, append([]string{"template", "rel", chartDir(t), "--namespace", "tether-system"}, args...)...)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	var objs []object
	dec := yaml.NewDocumentDecoder(nopCloser{strings.NewReader(out)})
	buf := make([]byte, 4<<20)
	for {
		n, err := dec.Read(buf)
		if err != nil {
			break
		}
		doc := append([]byte(nil), buf[:n]...)
		var o object
		if err := sigsyaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if o.Kind == "" {
			continue
		}
		o.raw = doc
		objs = append(objs, o)
	}
	return objs
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

func TestLint(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", chartDir(t)); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

func TestPodsAreRestricted(t *testing.T) {
	deployments := 0
	for _, o := range render(t) {
		if o.Kind != "Deployment" {
			continue
		}
		deployments++
		var d appsv1.Deployment
		if err := sigsyaml.Unmarshal(o.raw, &d); err != nil {
			t.Fatal(err)
		}
		pod := d.Spec.Template.Spec
		if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
			sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod security context %+v is not restricted", o.Metadata.Name, sc)
		}
		for _, c := range pod.Containers {
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("%s/%s: container security context %+v is not restricted", o.Metadata.Name, c.Name, sc)
			}
			if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
				t.Errorf("%s/%s: no memory limit or CPU request", o.Metadata.Name, c.Name)
			}
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("%s/%s: probes missing", o.Metadata.Name, c.Name)
			}
		}
	}
	if deployments != 2 {
		t.Fatalf("%d Deployments rendered, want the manager and the gateway", deployments)
	}
}

// TestRBACIsTheGeneratedRoles: each ClusterRole is exactly what
// controller-gen generated from the code, and none uses a wildcard.
func TestRBACIsTheGeneratedRoles(t *testing.T) {
	root := filepath.Dir(filepath.Dir(chartDir(t)))
	want := map[string]string{
		"rel-tether-manager": "config/rbac/role.yaml",
		"rel-tether-gateway": "config/gateway/role.yaml",
		"rel-tether-runtime": "config/runtime/role.yaml",
	}
	seen := 0
	for _, o := range render(t) {
		if o.Kind != "ClusterRole" && o.Kind != "Role" {
			continue
		}
		var role rbacv1.ClusterRole
		if err := sigsyaml.Unmarshal(o.raw, &role); err != nil {
			t.Fatal(err)
		}
		for _, r := range role.Rules {
			if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
				t.Errorf("%s %s has a wildcard rule: %+v", o.Kind, o.Metadata.Name, r)
			}
			// The runtime reads its store's Secrets from files the manager
			// mounts; the role of code beside agents reads none.
			if strings.HasPrefix(o.Metadata.Name, "rel-tether-runtime") && slices.Contains(r.Resources, "secrets") {
				t.Errorf("%s %s may touch Secrets: %+v", o.Kind, o.Metadata.Name, r)
			}
		}
		file, ok := want[o.Metadata.Name]
		if !ok || o.Kind != "ClusterRole" {
			continue
		}
		seen++
		data, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		var generated rbacv1.ClusterRole
		if err := sigsyaml.Unmarshal(data, &generated); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(generated.Rules, role.Rules); diff != "" {
			t.Errorf("%s differs from %s (run make manifests) (-generated +chart):\n%s", o.Metadata.Name, file, diff)
		}
	}
	if seen != len(want) {
		t.Fatalf("%d of the %d generated roles rendered", seen, len(want))
	}
}

func TestCRDsAreConfigs(t *testing.T) {
	root := filepath.Dir(filepath.Dir(chartDir(t)))
	bases, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(bases) == 0 {
		t.Fatalf("no CRDs under config/crd/bases: %v", err)
	}
	charted, _ := filepath.Glob(filepath.Join(chartDir(t), "crds", "*.yaml"))
	if len(charted) != len(bases) {
		t.Fatalf("%d CRDs in the chart, %d in config/crd/bases (run make manifests)", len(charted), len(bases))
	}
	for _, base := range bases {
		a, _ := os.ReadFile(base)
		b, err := os.ReadFile(filepath.Join(chartDir(t), "crds", filepath.Base(base)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("charts/tether/crds/%s differs from config/crd/bases (run make manifests): %v", filepath.Base(base), err)
		}
	}
}

// TestNoSharedSecretBetweenGatewayAndRuntimes: nothing secret is rendered
// into an agent namespace but that namespace's own runtime key pair
// (TestRuntimeTLS): the gateway proves who it is with a projected token of
// its own ServiceAccount, for the runtime audience only; the
// runtimes may review tokens and nothing else cluster-wide; the gateway
// reads only the agent namespaces; each gets a NetworkPolicy.
func TestNoSharedSecretBetweenGatewayAndRuntimes(t *testing.T) {
	agentNamespaces := []string{"team-a", "team-b"}
	policies, projected := 0, false
	for _, o := range render(t, "--set", "runtime.agentNamespaces={team-a,team-b}") {
		switch {
		case o.Kind == "Secret" && slices.Contains(agentNamespaces, o.Metadata.Namespace) && o.Metadata.Name != "tether-runtime-tls":
			t.Errorf("Secret %s/%s rendered into an agent namespace", o.Metadata.Namespace, o.Metadata.Name)
		case o.Kind == "NetworkPolicy":
			policies++
		case o.Kind == "ClusterRoleBinding" && strings.HasSuffix(o.Metadata.Name, "-gateway"):
			t.Errorf("the gateway is bound cluster-wide (%s): it reads the agent namespaces only", o.Metadata.Name)
		case o.Kind == "ClusterRole" && strings.HasSuffix(o.Metadata.Name, "-runtime-tokenreview"):
			var role rbacv1.ClusterRole
			if err := sigsyaml.Unmarshal(o.raw, &role); err != nil {
				t.Fatal(err)
			}
			want := []rbacv1.PolicyRule{{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}}}
			if diff := cmp.Diff(want, role.Rules); diff != "" {
				t.Errorf("the runtimes' cluster-wide role (-want +got):\n%s", diff)
			}
		case o.Kind == "Deployment" && strings.HasSuffix(o.Metadata.Name, "-gateway"):
			var d appsv1.Deployment
			if err := sigsyaml.Unmarshal(o.raw, &d); err != nil {
				t.Fatal(err)
			}
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Projected == nil {
					continue
				}
				for _, src := range v.Projected.Sources {
					if tok := src.ServiceAccountToken; tok != nil && tok.Audience == "tether-runtime" {
						projected = true
					}
				}
			}
		}
	}
	if policies != len(agentNamespaces) || !projected {
		t.Fatalf("%d NetworkPolicies (want %d); gateway token projected for tether-runtime: %v", policies, len(agentNamespaces), projected)
	}
}

func TestSchemaRefusesBadValues(t *testing.T) {
	for _, set := range []string{"gateway.replicas=0", "gateway.holdTimeout=soon", "image.pullPolicy=Sometimes",
		"runtime.agentNamespaces={Bad_Name}", "gateway.allowedOrigins={evil.example}", "unknown=1"} {
		if out, err := helm(t, "template", "rel", chartDir(t), "--set", set); err == nil {
			t.Errorf("--set %s was accepted", set)
		} else if !strings.Contains(out, "schema") {
			t.Errorf("--set %s refused, but not by the schema: %s", set, out)
		}
	}
}

// TestRedisPassword: with a Redis password, each agent namespace gets the
// Secret an Agent's store names; without one, none.
func TestRedisPassword(t *testing.T) {
	count := func(args ...string) int {
		n := 0
		for _, o := range render(t, args...) {
			if o.Kind == "Secret" && o.Metadata.Name == "tether-redis" {
				n++
			}
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("%d Redis Secrets without a password", n)
	}
	if n := count("--set", "redis.password=s3cret", "--set", "runtime.agentNamespaces={team-a,team-b}"); n != 2 {
		t.Fatalf("%d Redis Secrets for two agent namespaces", n)
	}
}
