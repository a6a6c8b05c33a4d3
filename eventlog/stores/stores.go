// Package stores opens the event-log backend an Agent's store settings name,
// reading its credentials (the Redis password, a CA bundle) from Kubernetes
// Secrets in the Agent's namespace, never from the Agent itself: the
// manager reads them from the API server (APISecrets); the runtime reads
// the files the manager mounted into its container (MountedSecrets), so it
// needs no access to Secrets at all.
package stores

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/eventlog/redislog"
)

// Secrets gives the value of a key of a Secret in a namespace.
type Secrets interface {
	Value(ctx context.Context, namespace string, ref *corev1.SecretKeySelector) ([]byte, error)
}

// APISecrets reads Secrets from the API server.
type APISecrets struct{ Reader client.Reader }

// Value implements Secrets.
func (s APISecrets) Value(ctx context.Context, namespace string, ref *corev1.SecretKeySelector) ([]byte, error) {
	var secret corev1.Secret
	if err := s.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &secret); err != nil {
		return nil, fmt.Errorf("stores: reading Secret %s/%s: %w", namespace, ref.Name, err)
	}
	value, ok := secret.Data[ref.Key]
	if !ok {
		return nil, fmt.Errorf("stores: Secret %s/%s has no key %q", namespace, ref.Name, ref.Key)
	}
	return value, nil
}

// MountedSecrets reads the keys of Secrets mounted under Dir as
// NAME/KEY, as the manager mounts the ones an Agent's store names into its
// runtime's container (at MountDir, MountedSecretPath).
type MountedSecrets struct{ Dir string }

// MountDir is where the manager mounts the Secret keys an Agent's store
// names into the containers that run the runtime.
const MountDir = "/var/run/tether/store-secrets"

// MountedSecretPath is where, under a MountedSecrets directory, ref is.
func MountedSecretPath(ref *corev1.SecretKeySelector) string {
	return filepath.Join(ref.Name, ref.Key)
}

// Value implements Secrets.
func (s MountedSecrets) Value(_ context.Context, namespace string, ref *corev1.SecretKeySelector) ([]byte, error) {
	value, err := os.ReadFile(filepath.Join(s.Dir, MountedSecretPath(ref)))
	if err != nil {
		return nil, fmt.Errorf("stores: Secret %s/%s key %q is not mounted into the runtime's container (the manager mounts what the Agent's store names; is the Agent's pod template current?): %w",
			namespace, ref.Name, ref.Key, err)
	}
	return value, nil
}

// SecretRefs lists the Secret keys spec names.
func SecretRefs(spec tetherv1alpha1.StoreSpec) []*corev1.SecretKeySelector {
	if spec.Type != tetherv1alpha1.StoreRedis || spec.Redis == nil {
		return nil
	}
	var refs []*corev1.SecretKeySelector
	if spec.Redis.PasswordSecretRef != nil {
		refs = append(refs, spec.Redis.PasswordSecretRef)
	}
	if spec.Redis.TLS != nil && spec.Redis.TLS.CASecretRef != nil {
		refs = append(refs, spec.Redis.TLS.CASecretRef)
	}
	return refs
}

// Open returns the backend of spec for an Agent in namespace. kube reads and
// writes the kubernetes store's objects (directly, not through a cache);
// secrets gives the Secrets spec refers to.
func Open(ctx context.Context, spec tetherv1alpha1.StoreSpec, namespace string, kube client.Client, secrets Secrets) (eventlog.Log, error) {
	switch spec.Type {
	case tetherv1alpha1.StoreKubernetes, "":
		return kubelog.New(kube), nil
	case tetherv1alpha1.StoreMemory:
		return memory.New(), nil
	case tetherv1alpha1.StoreRedis:
		if spec.Redis == nil {
			return nil, errors.New("stores: store type redis without redis settings")
		}
		opts, err := RedisOptions(ctx, spec.Redis, namespace, secrets)
		if err != nil {
			return nil, err
		}
		return redislog.New(opts)
	}
	return nil, fmt.Errorf("stores: unknown store type %q", spec.Type)
}

// RedisOptions turns an Agent's Redis settings into client options.
func RedisOptions(ctx context.Context, spec *tetherv1alpha1.RedisStoreSpec, namespace string, secrets Secrets) (redislog.Options, error) {
	opts := redislog.Options{
		Addrs: spec.Addresses, MasterName: spec.MasterName, DB: int(spec.DB),
		Username: spec.Username, KeyPrefix: spec.KeyPrefix, MinReplicas: int(spec.MinReplicas),
	}
	if spec.PasswordSecretRef != nil {
		password, err := secrets.Value(ctx, namespace, spec.PasswordSecretRef)
		if err != nil {
			return opts, err
		}
		opts.Password = string(password)
	}
	if spec.TLS != nil {
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: spec.TLS.ServerName}
		if spec.TLS.CASecretRef != nil {
			pem, err := secrets.Value(ctx, namespace, spec.TLS.CASecretRef)
			if err != nil {
				return opts, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return opts, fmt.Errorf("stores: Secret %s/%s key %s holds no PEM certificate", namespace, spec.TLS.CASecretRef.Name, spec.TLS.CASecretRef.Key)
			}
			opts.TLS.RootCAs = pool
		}
	}
	return opts, nil
}
