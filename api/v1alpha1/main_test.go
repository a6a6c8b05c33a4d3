package v1alpha1_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/internal/testing/testenv"
)

// env is one control plane shared by this package's tests; each test works
// in a namespace of its own.
var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

var namespaceSeq atomic.Int32

// newNamespace creates a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("api-test-%d", namespaceSeq.Add(1))}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// fromYAML parses a manifest the way a user writes one, so fields the typed
// Go structs would omit (a zero, an empty string) reach the API server.
func fromYAML(t *testing.T, namespace, manifest string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &obj.Object); err != nil {
		t.Fatalf("bad test manifest: %v\n%s", err, manifest)
	}
	obj.SetNamespace(namespace)
	return obj
}

// isInvalid reports whether err is the API server's 422 Invalid.
func isInvalid(err error) bool {
	return apierrors.IsInvalid(err)
}
