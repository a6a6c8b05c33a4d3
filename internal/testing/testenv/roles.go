package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/yaml"
)

// GeneratedRole creates, as ClusterRole name, the role controller-gen
// generated into file (relative to the module root, such as
// config/runtime/role.yaml), so a test can run a component under exactly
// the permissions its code declares.
func (e *Env) GeneratedRole(tb testing.TB, file, name string) *rbacv1.ClusterRole {
	tb.Helper()
	root, err := ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, file)) //nolint:gosec // a file of the module
	if err != nil {
		tb.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(data, role); err != nil {
		tb.Fatal(err)
	}
	role.Name = name
	if err := e.Client.Create(context.Background(), role); err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatal(err)
	}
	return role
}
