package controllers

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// Running Tether's runtime in an image of the user's own (spec.agentContainer):
// an init container from the runtime image copies the static runtime binary
// into an emptyDir, and the agent container runs it with its own command as
// the stdio agent. Nothing of Tether has to be in the user's image, and the
// runtime stays one process per pod beside the agent processes it starts,
// exactly as in Tether's own image. (A sidecar would need a second channel
// between two containers for every conversation's stdio; wrapping keeps the
// contract local and the pod's shape the user's.)
const (
	runtimeBinVolume  = "tether-runtime-bin"
	runtimeBinDir     = "/var/run/tether-bin"
	runtimeBinPath    = runtimeBinDir + "/runtime"
	runtimeInstallBin = "/runtime" // where the runtime image holds it
	runtimeInstaller  = "tether-runtime-install"
)

// injectRuntime wraps container name of spec with the runtime from image.
func injectRuntime(spec *corev1.PodSpec, name, image string) error {
	if image == "" {
		return fmt.Errorf("spec.agentContainer is set but the manager has no --runtime-image to inject the runtime from")
	}
	var c *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			c = &spec.Containers[i]
		}
	}
	if c == nil || len(c.Command) == 0 {
		return fmt.Errorf("spec.agentContainer %q must name a container of the template that sets command", name)
	}
	args := append([]string{"--agent-command=" + c.Command[0], "--"}, c.Command[1:]...)
	c.Args = append(args, c.Args...)
	c.Command = []string{runtimeBinPath}
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: runtimeBinVolume, MountPath: runtimeBinDir, ReadOnly: true})
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: runtimeBinVolume,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("128Mi"))}}})
	spec.InitContainers = append(spec.InitContainers, corev1.Container{
		Name: runtimeInstaller, Image: image, ImagePullPolicy: c.ImagePullPolicy,
		Command:      []string{runtimeInstallBin, "--install=" + runtimeBinPath},
		VolumeMounts: []corev1.VolumeMount{{Name: runtimeBinVolume, MountPath: runtimeBinDir}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	})
	return nil
}
