package controllers

import (
	corev1 "k8s.io/api/core/v1"
)

// EnvGatewayIdentity names, in every worker container, the only identity the
// runtime lets connect: the gateway's ServiceAccount user name, whose
// audience-bound tokens the runtime checks with TokenReviews.
const EnvGatewayIdentity = "TETHER_GATEWAY_IDENTITY"

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
}

// wire applies w to a pod spec.
func (w RuntimeWiring) wire(spec *corev1.PodSpec) {
	if w.ServiceAccount != "" && spec.ServiceAccountName == "" {
		spec.ServiceAccountName = w.ServiceAccount
	}
}

// env is what w adds to every worker container's environment.
func (w RuntimeWiring) env() []corev1.EnvVar {
	if w.GatewayIdentity == "" {
		return nil
	}
	return []corev1.EnvVar{{Name: EnvGatewayIdentity, Value: w.GatewayIdentity}}
}

func mountsAt(c *corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return true
		}
	}
	return false
}
