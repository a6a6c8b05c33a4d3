package controllers

import (
	corev1 "k8s.io/api/core/v1"
)

// RuntimeTokenDir is where an Agent's containers find the token the gateway
// presents (file "token"), the runtime's --token-file default directory.
const RuntimeTokenDir = "/var/run/tether" //nolint:gosec // a directory, not a credential

const runtimeTokenVolume = "tether-runtime-token"

// RuntimeWiring is what the manager adds to the pods of every Agent with a
// template, so that a template need only name its image and agent: the
// ServiceAccount bound to the runtime's role and the gateway's token. What a
// template sets itself is kept.
type RuntimeWiring struct {
	// TokenSecret names a Secret (key "token") in the Agent's namespace,
	// mounted read-only at RuntimeTokenDir in every container that mounts
	// nothing there.
	TokenSecret string
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
	if w.TokenSecret == "" {
		return
	}
	mounted := false
	for i := range spec.Containers {
		c := &spec.Containers[i]
		if mountsAt(c, RuntimeTokenDir) {
			continue
		}
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: runtimeTokenVolume, MountPath: RuntimeTokenDir, ReadOnly: true})
		mounted = true
	}
	if mounted {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: runtimeTokenVolume,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: w.TokenSecret}}})
	}
}

func mountsAt(c *corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return true
		}
	}
	return false
}
