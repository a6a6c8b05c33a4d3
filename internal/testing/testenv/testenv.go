package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// Env is a running control plane with Tether's CRDs installed.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client is a controller-runtime client with Tether's types registered.
	Client client.Client
	// Scheme holds the Kubernetes and Tether types.
	Scheme *k8sruntime.Scheme
	// ToolsDir holds the pinned binaries (etcd, kube-apiserver, kubectl).
	ToolsDir string

	env *envtest.Environment
}

// Start brings up a control plane for one test and stops it when the test
// ends.
func Start(tb testing.TB) *Env {
	tb.Helper()
	e, err := New()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.Stop(); err != nil {
			tb.Errorf("stopping the control plane: %v", err)
		}
	})
	return e
}

// New brings up etcd and kube-apiserver and installs the CRDs from
// config/crd/bases. Use it from TestMain to share one control plane among a
// package's tests; call Stop when done.
func New() (*Env, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	tools, err := ToolsDir(root)
	if err != nil {
		return nil, err
	}
	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := tetherv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: tools,
		Scheme:                scheme,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("testenv: starting the control plane from %s: %w", tools, err)
	}
	// The client-go defaults of 5 QPS / 10 burst throttle tests that create
	// many objects.
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Env{Config: cfg, Client: c, Scheme: scheme, ToolsDir: tools, env: env}, nil
}

// Stop stops the control plane.
func (e *Env) Stop() error {
	return e.env.Stop()
}

// Kubeconfig writes a kubeconfig for an administrator of this control plane
// into dir and returns its path, for driving the real kubectl.
func (e *Env) Kubeconfig(dir string) (string, error) {
	user, err := e.env.ControlPlane.AddUser(envtest.User{Name: "tether-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("testenv: adding a kubectl user: %w", err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("testenv: rendering a kubeconfig: %w", err)
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// UserConfig returns a rest.Config for a user with only the permissions RBAC
// grants it (no groups), to check that a component's role is enough.
func (e *Env) UserConfig(name string) (*rest.Config, error) {
	user, err := e.env.ControlPlane.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		return nil, fmt.Errorf("testenv: adding user %s: %w", name, err)
	}
	cfg := user.Config()
	cfg.QPS, cfg.Burst = 500, 1000
	return cfg, nil
}

// Kubectl runs the pinned kubectl with kubeconfig and returns its combined
// output.
func (e *Env) Kubectl(kubeconfig string, args ...string) (string, error) {
	// The binary is the pinned kubectl; the arguments come from the test.
	cmd := exec.CommandContext(context.Background(), filepath.Join(e.ToolsDir, "kubectl"), //nolint:gosec // see above
		append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// GVR returns the resource of a Tether kind's plural name.
func GVR(plural string) schema.GroupVersionResource {
	return tetherv1alpha1.GroupVersion.WithResource(plural)
}

// ModuleRoot is the directory holding Tether's go.mod.
func ModuleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("testenv: cannot locate the source file")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no go.mod above " + filepath.Dir(file))
		}
		dir = parent
	}
}

// ToolsDir finds the pinned binaries: $KUBEBUILDER_ASSETS when set (make test
// sets it), otherwise the versioned cache hack/tools/install.sh builds into.
func ToolsDir(root string) (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		cmd := exec.CommandContext(context.Background(), "bash", "-c", "source hack/tools/versions.sh && tether_tools_bin")
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("testenv: locating the tools cache: %w", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	for _, bin := range []string{"etcd", "kube-apiserver", "kubectl"} {
		// dir is the developer's own setting (or the cache path), not remote input.
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil { //nolint:gosec // see above
			return "", fmt.Errorf("testenv: %s is missing from %s; run `make test` (or hack/tools/install.sh) to build it", bin, dir)
		}
	}
	return dir, nil
}

// ServiceAccountToken creates namespace ns and ServiceAccount name in it
// when missing and returns a token the API server issued for it, valid for
// audience for an hour: what the kubelet projects into a pod.
func (e *Env) ServiceAccountToken(tb testing.TB, ns, name, audience string) string {
	tb.Helper()
	ctx := context.Background()
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
	} {
		if err := e.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			tb.Fatal(err)
		}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{audience}, ExpirationSeconds: ptr.To(int64(3600))}}
	if err := e.Client.SubResource("token").Create(ctx, sa, req); err != nil {
		tb.Fatalf("requesting a token for %s/%s: %v", ns, name, err)
	}
	return req.Status.Token
}
