package stores_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/eventlog/redislog"
	"tether.dev/tether/eventlog/stores"
	"tether.dev/tether/internal/testing/testenv"
	"tether.dev/tether/internal/testing/testredis"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func TestOpenPicksTheBackend(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		spec tetherv1alpha1.StoreSpec
		want any
	}{
		{tetherv1alpha1.StoreSpec{}, &kubelog.Log{}},
		{tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreKubernetes}, &kubelog.Log{}},
		{tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreMemory}, &memory.Log{}},
		{tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreRedis, Redis: &tetherv1alpha1.RedisStoreSpec{Addresses: []string{"127.0.0.1:1"}}}, &redislog.Log{}},
	} {
		log, err := stores.Open(ctx, tc.spec, "default", env.Client, stores.APISecrets{Reader: env.Client})
		if err != nil {
			t.Fatalf("%+v: %v", tc.spec, err)
		}
		if fmt.Sprintf("%T", log) != fmt.Sprintf("%T", tc.want) {
			t.Errorf("%+v opened a %T", tc.spec, log)
		}
		_ = log.Close()
	}
	if _, err := stores.Open(ctx, tetherv1alpha1.StoreSpec{Type: "postgres"}, "default", env.Client, stores.APISecrets{Reader: env.Client}); err == nil {
		t.Error("an unknown store type opened")
	}
}

// TestRedisPasswordComesFromASecret: the password is read from the Secret the
// Agent names; a missing Secret, a missing key or a wrong password is a
// clear error.
func TestRedisPasswordComesFromASecret(t *testing.T) {
	ctx := context.Background()
	server := testredis.StartWithPassword(t, "correct horse battery staple")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "stores-test"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for name, password := range map[string]string{"redis": server.Password, "stale": "hunter2"} {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name}, Data: map[string][]byte{"password": []byte(password)}}
		if err := env.Client.Create(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(secret, key string) tetherv1alpha1.StoreSpec {
		return tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreRedis, Redis: &tetherv1alpha1.RedisStoreSpec{
			Addresses:         []string{server.Addr},
			PasswordSecretRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key},
		}}
	}

	log, err := stores.Open(ctx, spec("redis", "password"), ns.Name, env.Client, stores.APISecrets{Reader: env.Client})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = log.Close() }()
	key := eventlogtest.NewKey("stores")
	if _, err := log.Claim(ctx, key, 1); err != nil {
		t.Fatalf("with the password from the Secret: %v", err)
	}

	if _, err := stores.Open(ctx, spec("absent", "password"), ns.Name, env.Client, stores.APISecrets{Reader: env.Client}); err == nil || !strings.Contains(err.Error(), "reading Secret stores-test/absent") {
		t.Errorf("a missing Secret: %v", err)
	}
	if _, err := stores.Open(ctx, spec("redis", "pass"), ns.Name, env.Client, stores.APISecrets{Reader: env.Client}); err == nil || !strings.Contains(err.Error(), `has no key "pass"`) {
		t.Errorf("a missing key: %v", err)
	}
	wrong, err := stores.Open(ctx, spec("stale", "password"), ns.Name, env.Client, stores.APISecrets{Reader: env.Client})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = wrong.Close() }()
	_, err = wrong.Claim(ctx, key, 2)
	if err == nil || errors.Is(err, eventlog.ErrFenced) || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("a wrong password: %v", err)
	}
}

// TestRuntimeReadsMountedSecrets: the runtime, which may not read Secrets
// from the API, opens the store with the keys mounted into its container
// at the paths the manager mounts them to.
func TestRuntimeReadsMountedSecrets(t *testing.T) {
	ctx := context.Background()
	server := testredis.StartWithPassword(t, "correct horse battery staple")
	ref := &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "redis"}, Key: "password"}
	spec := tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreRedis, Redis: &tetherv1alpha1.RedisStoreSpec{Addresses: []string{server.Addr}, PasswordSecretRef: ref}}
	dir := t.TempDir()
	if _, err := stores.Open(ctx, spec, "default", nil, stores.MountedSecrets{Dir: dir}); err == nil || !strings.Contains(err.Error(), "is not mounted into the runtime's container") {
		t.Fatalf("nothing mounted: %v", err)
	}
	path := filepath.Join(dir, stores.MountedSecretPath(ref))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(server.Password), 0o400); err != nil {
		t.Fatal(err)
	}
	log, err := stores.Open(ctx, spec, "default", nil, stores.MountedSecrets{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = log.Close() }()
	if _, err := log.Claim(ctx, eventlogtest.NewKey("mounted"), 1); err != nil {
		t.Fatalf("with the mounted password: %v", err)
	}
}
