package chart

import (
	"crypto/tls"
	"crypto/x509"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// runtimeTLS is what a render holds for the hop's TLS.
type runtimeTLS struct {
	ca          []byte
	pairs       map[string]corev1.Secret // by namespace
	gatewayArgs []string
	gatewayCA   *corev1.SecretVolumeSource
	managerArgs []string
}

func renderTLS(t *testing.T, args ...string) runtimeTLS {
	t.Helper()
	r := runtimeTLS{pairs: map[string]corev1.Secret{}}
	for _, o := range render(t, args...) {
		switch {
		case o.Kind == "Secret" && o.Metadata.Name == "rel-tether-runtime-ca":
			var s corev1.Secret
			if err := sigsyaml.Unmarshal(o.raw, &s); err != nil {
				t.Fatal(err)
			}
			r.ca = s.Data["ca.crt"]
		case o.Kind == "Secret" && o.Metadata.Name == "tether-runtime-tls":
			var s corev1.Secret
			if err := sigsyaml.Unmarshal(o.raw, &s); err != nil {
				t.Fatal(err)
			}
			r.pairs[o.Metadata.Namespace] = s
		case o.Kind == "Deployment":
			var d appsv1.Deployment
			if err := sigsyaml.Unmarshal(o.raw, &d); err != nil {
				t.Fatal(err)
			}
			c := d.Spec.Template.Spec.Containers[0]
			if strings.HasSuffix(o.Metadata.Name, "-gateway") {
				r.gatewayArgs = c.Args
				for _, v := range d.Spec.Template.Spec.Volumes {
					if v.Name == "runtime-ca" {
						r.gatewayCA = v.Secret
					}
				}
			} else {
				r.managerArgs = c.Args
			}
		}
	}
	return r
}

// TestRuntimeTLS: by default the chart makes a CA and, per agent namespace,
// a key pair for tether-runtime.<namespace> that it signs; the gateway gets
// the CA's certificate (not its key) and dials with it; the manager mounts
// the namespace's pair into runtimes. One namespace's pair does not pass
// for another's. Bringing your own renders no key material; disabling it
// renders no flags.
func TestRuntimeTLS(t *testing.T) {
	r := renderTLS(t, "--set", "runtime.agentNamespaces={team-a,team-b}")
	roots := x509.NewCertPool()
	if len(r.ca) == 0 || !roots.AppendCertsFromPEM(r.ca) {
		t.Fatal("no CA rendered")
	}
	if len(r.pairs) != 2 {
		t.Fatalf("key pairs in %d namespaces, want team-a and team-b", len(r.pairs))
	}
	for ns, secret := range r.pairs {
		pair, err := tls.X509KeyPair(secret.Data["tls.crt"], secret.Data["tls.key"])
		if err != nil {
			t.Fatalf("%s: %v", ns, err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		for other := range r.pairs {
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "tether-runtime." + other})
			if (err == nil) != (other == ns) {
				t.Errorf("%s's certificate for tether-runtime.%s: %v", ns, other, err)
			}
		}
	}
	if !slices.Contains(r.gatewayArgs, "--runtime-ca-file=/var/run/tether/runtime-ca/ca.crt") ||
		r.gatewayCA == nil || r.gatewayCA.SecretName != "rel-tether-runtime-ca" || len(r.gatewayCA.Items) != 1 || r.gatewayCA.Items[0].Key != "ca.crt" {
		t.Fatalf("the gateway: args %v, CA volume %+v (the CA's certificate only)", r.gatewayArgs, r.gatewayCA)
	}
	if !slices.Contains(r.managerArgs, "--runtime-tls-secret=tether-runtime-tls") {
		t.Fatalf("the manager's args %v", r.managerArgs)
	}

	own := renderTLS(t, "--set", "runtime.tls.generate=false", "--set", "runtime.tls.caSecret=my-ca")
	if own.ca != nil || len(own.pairs) != 0 || own.gatewayCA == nil || own.gatewayCA.SecretName != "my-ca" {
		t.Fatalf("bring your own: CA %v, pairs %d, gateway CA %+v", own.ca != nil, len(own.pairs), own.gatewayCA)
	}

	off := renderTLS(t, "--set", "runtime.tls.enabled=false")
	if off.ca != nil || len(off.pairs) != 0 || off.gatewayCA != nil || slices.ContainsFunc(off.gatewayArgs, func(a string) bool { return strings.HasPrefix(a, "--runtime-ca-file") }) ||
		slices.ContainsFunc(off.managerArgs, func(a string) bool { return strings.HasPrefix(a, "--runtime-tls-secret") }) {
		t.Fatal("TLS disabled still renders some of it")
	}
}
