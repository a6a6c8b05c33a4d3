// Package stores opens the event-log backend an Agent's store settings name,
// reading its credentials (the Redis password, a CA bundle) from Kubernetes
// Secrets in the Agent's namespace, never from the Agent itself.
package stores

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/eventlog/redislog"
)

// Open returns the backend of spec for an Agent in namespace. kube reads and
// writes the kubernetes store's objects (directly, not through a cache);
// secrets reads the Secrets spec refers to.
func Open(ctx context.Context, spec tetherv1alpha1.StoreSpec, namespace string, kube client.Client, secrets client.Reader) (eventlog.Log, error) {
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
func RedisOptions(ctx context.Context, spec *tetherv1alpha1.RedisStoreSpec, namespace string, secrets client.Reader) (redislog.Options, error) {
	opts := redislog.Options{
		Addrs: spec.Addresses, MasterName: spec.MasterName, DB: int(spec.DB),
		Username: spec.Username, KeyPrefix: spec.KeyPrefix,
	}
	if spec.PasswordSecretRef != nil {
		password, err := secretValue(ctx, secrets, namespace, spec.PasswordSecretRef)
		if err != nil {
			return opts, err
		}
		opts.Password = string(password)
	}
	if spec.TLS != nil {
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: spec.TLS.ServerName}
		if spec.TLS.CASecretRef != nil {
			pem, err := secretValue(ctx, secrets, namespace, spec.TLS.CASecretRef)
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

func secretValue(ctx context.Context, secrets client.Reader, namespace string, ref *corev1.SecretKeySelector) ([]byte, error) {
	var secret corev1.Secret
	if err := secrets.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &secret); err != nil {
		return nil, fmt.Errorf("stores: reading Secret %s/%s: %w", namespace, ref.Name, err)
	}
	value, ok := secret.Data[ref.Key]
	if !ok {
		return nil, fmt.Errorf("stores: Secret %s/%s has no key %q", namespace, ref.Name, ref.Key)
	}
	return value, nil
}
