package controllers

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"tether.dev/tether/eventlog/stores"
)

// Running an agent in an image of the user's own (spec.agentContainer),
// without the runtime's credentials. The pod gets two containers:
//   - the agent's container, with its own image, runs Tether's runtime
//     binary (copied into an emptyDir by an init container) as a spawner:
//     it starts the agent's command once per conversation. It has no
//     ServiceAccount token and none of Tether's environment.
//   - the runtime's container (RuntimeContainer), from Tether's runtime
//     image, holds the pod's Lease, serves the gateway and has the only
//     ServiceAccount token of the pod (a projected volume; the pod's
//     automount is off). It asks the spawner for each conversation's
//     program over a Unix socket in an emptyDir only these two containers
//     mount, and carries the program's stdio over it.
//
// So agent code (an LLM agent, a prompt-injected tool call) cannot read the
// token, and cannot act as the runtime towards the API server.
const (
	runtimeBinVolume  = "tether-runtime-bin"
	runtimeBinDir     = "/var/run/tether-bin"
	runtimeBinPath    = runtimeBinDir + "/runtime"
	runtimeInstallBin = "/runtime" // where the runtime image holds it
	runtimeInstaller  = "tether-runtime-install"

	spawnerVolume = "tether-spawner"
	spawnerDir    = "/var/run/tether-spawner"
	spawnerSocket = spawnerDir + "/agent.sock"

	apiAccessVolume = "tether-kube-api-access"
	apiAccessDir    = "/var/run/secrets/kubernetes.io/serviceaccount"

	// RuntimeContainer is the container the manager adds to run the
	// runtime beside an Agent's own agentContainer.
	RuntimeContainer = "tether-runtime"
)

// restricted is the security context of the containers Tether adds: the
// restricted Pod Security profile.
func restricted() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// injectRuntime splits spec as above around container name, with the
// runtime from image.
func injectRuntime(spec *corev1.PodSpec, name, image string) error {
	if image == "" {
		return fmt.Errorf("spec.agentContainer is set but the manager has no --runtime-image to inject the runtime from")
	}
	var c *corev1.Container
	for i := range spec.Containers {
		switch spec.Containers[i].Name {
		case name:
			c = &spec.Containers[i]
		case RuntimeContainer:
			return fmt.Errorf("the template has a container named %q, the name of the runtime's container Tether adds", RuntimeContainer)
		}
	}
	if c == nil || len(c.Command) == 0 {
		return fmt.Errorf("spec.agentContainer %q must name a container of the template that sets command", name)
	}
	if spec.AutomountServiceAccountToken != nil && *spec.AutomountServiceAccountToken {
		return fmt.Errorf("spec.agentContainer keeps the ServiceAccount token away from agent code; the template must not set automountServiceAccountToken: true")
	}
	spec.AutomountServiceAccountToken = ptr.To(false)

	args := append([]string{"--serve-spawner=" + spawnerSocket, "--agent-command=" + c.Command[0], "--"}, c.Command[1:]...)
	c.Args = append(args, c.Args...)
	c.Command = []string{runtimeBinPath}
	c.VolumeMounts = append(c.VolumeMounts,
		corev1.VolumeMount{Name: runtimeBinVolume, MountPath: runtimeBinDir, ReadOnly: true},
		corev1.VolumeMount{Name: spawnerVolume, MountPath: spawnerDir})

	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: runtimeBinVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("128Mi"))}}},
		corev1.Volume{Name: spawnerVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("1Mi"))}}},
		apiAccess())
	spec.InitContainers = append(spec.InitContainers, corev1.Container{
		Name: runtimeInstaller, Image: image, ImagePullPolicy: c.ImagePullPolicy,
		Command:      []string{runtimeInstallBin, "--install=" + runtimeBinPath},
		VolumeMounts: []corev1.VolumeMount{{Name: runtimeBinVolume, MountPath: runtimeBinDir}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: restricted(),
	})
	spec.Containers = append(spec.Containers, corev1.Container{
		Name: RuntimeContainer, Image: image, ImagePullPolicy: c.ImagePullPolicy,
		Command: []string{runtimeInstallBin}, Args: []string{"--agent-spawner=" + spawnerSocket},
		VolumeMounts: []corev1.VolumeMount{
			{Name: spawnerVolume, MountPath: spawnerDir},
			{Name: apiAccessVolume, MountPath: apiAccessDir, ReadOnly: true},
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
		SecurityContext: restricted(),
	})
	return nil
}

// apiAccess is what the kubelet would mount into every container with
// automount on: a pod-bound token of the pod's ServiceAccount, the
// cluster's CA and the namespace; here it is mounted into the runtime's
// container only.
func apiAccess() corev1.Volume {
	return corev1.Volume{Name: apiAccessVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](0o444),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
			{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}},
			}}},
		},
	}}}
}

// Secrets an Agent's store names (the Redis password and CA) are mounted
// into the containers that run the runtime, which has no access to Secrets
// in the API; the agent's own container does not get them. They are at
// stores.MountDir, as NAME/KEY.
const storeSecretsVolume = "tether-store-secrets"

// storeSecrets is the volume of the Secret keys refs name, or nil.
func storeSecrets(refs []*corev1.SecretKeySelector) *corev1.Volume {
	if len(refs) == 0 {
		return nil
	}
	projected := &corev1.ProjectedVolumeSource{DefaultMode: ptr.To[int32](0o444)}
	for _, ref := range refs {
		projected.Sources = append(projected.Sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
			LocalObjectReference: ref.LocalObjectReference,
			Items:                []corev1.KeyToPath{{Key: ref.Key, Path: stores.MountedSecretPath(ref)}},
		}})
	}
	return &corev1.Volume{Name: storeSecretsVolume, VolumeSource: corev1.VolumeSource{Projected: projected}}
}
