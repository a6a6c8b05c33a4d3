package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// EnvGatewayIdentity names, in every worker container, the only identity the
// runtime lets connect: the gateway's ServiceAccount user name, whose
// audience-bound tokens the runtime checks with TokenReviews.
const EnvGatewayIdentity = "TETHER_GATEWAY_IDENTITY"

// EnvRuntimeTLSDir names, in the containers that run the runtime, the
// directory of the serving key pair it offers the gateway.
const EnvRuntimeTLSDir = "TETHER_RUNTIME_TLS_DIR"

// The runtime's serving key pair (RuntimeWiring.TLSSecret) is mounted here.
const (
	runtimeTLSVolume = "tether-runtime-tls"
	runtimeTLSDir    = "/var/run/tether/tls"
)

// RuntimeWiring is what the manager adds to the pods of every Agent with a
// template, so that a template need only name its image and agent: the
// ServiceAccount bound to the runtime's role and the gateway's identity.
// What a template sets itself is kept. Nothing secret is added: the gateway
// proves who it is with a token of its own.
type RuntimeWiring struct {
	// GatewayIdentity is the gateway's ServiceAccount user name
	// (system:serviceaccount:NAMESPACE:NAME), given to the runtime as
	// EnvGatewayIdentity.
	GatewayIdentity string
	// ServiceAccount is the pods' ServiceAccount when the template names
	// none.
	ServiceAccount string
	// Image is the runtime's image, injected into the container an Agent
	// names in spec.agentContainer.
	Image string
	// TLSSecret names the kubernetes.io/tls Secret, in the Agent's
	// namespace, the runtime serves the gateway with; none for plain.
	TLSSecret string
}

// wire applies w to a pod spec.
func (w RuntimeWiring) wire(spec *corev1.PodSpec) {
	if w.ServiceAccount != "" && spec.ServiceAccountName == "" {
		spec.ServiceAccountName = w.ServiceAccount
	}
}

// env is what w adds to every worker container's environment.
func (w RuntimeWiring) env() []corev1.EnvVar {
	var env []corev1.EnvVar
	if w.GatewayIdentity != "" {
		env = append(env, corev1.EnvVar{Name: EnvGatewayIdentity, Value: w.GatewayIdentity})
	}
	if w.TLSSecret != "" {
		env = append(env, corev1.EnvVar{Name: EnvRuntimeTLSDir, Value: runtimeTLSDir})
	}
	return env
}

// volumes are the volumes w adds to a pod, each with where the containers
// that run the runtime mount it.
func (w RuntimeWiring) volumes() map[string]corev1.Volume {
	if w.TLSSecret == "" {
		return nil
	}
	return map[string]corev1.Volume{runtimeTLSDir: {Name: runtimeTLSVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: w.TLSSecret, DefaultMode: ptr.To[int32](0o440),
		Items: []corev1.KeyToPath{{Key: corev1.TLSCertKey, Path: corev1.TLSCertKey}, {Key: corev1.TLSPrivateKeyKey, Path: corev1.TLSPrivateKeyKey}},
	}}}}
}

func mountsAt(c *corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return true
		}
	}
	return false
}
