package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog/stores"
)

// templateHashAnnotation on an Agent's Deployment records the hash of the pod
// template Tether rendered, so the Deployment is only written when the Agent
// changes (the API server's defaulting would make a field-by-field comparison
// differ forever).
const templateHashAnnotation = "tether.dev/template-hash"

// The environment every worker container gets, so the runtime knows who and
// where it is without being configured by hand.
const (
	EnvPodName              = "TETHER_POD_NAME"
	EnvPodNamespace         = "TETHER_POD_NAMESPACE"
	EnvPodIP                = "TETHER_POD_IP"
	EnvPodUID               = "TETHER_POD_UID"
	EnvAgent                = "TETHER_AGENT"
	EnvLeaseDurationSeconds = "TETHER_LEASE_DURATION_SECONDS"
	EnvRuntimePort          = "TETHER_RUNTIME_PORT"
)

// workerLabels are the labels of an Agent's Deployment and pods.
func workerLabels(agent *tetherv1alpha1.Agent) map[string]string {
	return map[string]string{
		tetherv1alpha1.AgentLabel:      agent.Name,
		"app.kubernetes.io/name":       "tether-agent",
		"app.kubernetes.io/instance":   agent.Name,
		"app.kubernetes.io/managed-by": "tether",
	}
}

// desiredDeployment renders the Deployment that runs an Agent's worker pods.
func desiredDeployment(agent *tetherv1alpha1.Agent, wiring RuntimeWiring) (*appsv1.Deployment, error) {
	template := agent.Spec.Template.DeepCopy()
	if agent.Spec.AgentContainer != "" {
		if err := injectRuntime(&template.Spec, agent.Spec.AgentContainer, wiring.Image); err != nil {
			return nil, err
		}
	}
	wiring.wire(&template.Spec)
	spreadOverNodes(agent, &template.Spec)
	if template.Labels == nil {
		template.Labels = map[string]string{}
	}
	for k, v := range workerLabels(agent) {
		template.Labels[k] = v
	}
	env := append(workerEnv(agent), wiring.env()...)
	for i := range template.Spec.InitContainers {
		template.Spec.InitContainers[i].Env = withEnv(template.Spec.InitContainers[i].Env, env)
	}
	// Volumes for the containers that run the runtime, by where they are
	// mounted.
	mounts := wiring.volumes()
	if secrets := storeSecrets(stores.SecretRefs(agent.Spec.Store)); secrets != nil {
		if mounts == nil {
			mounts = map[string]corev1.Volume{}
		}
		mounts[stores.MountDir] = *secrets
	}
	for _, dir := range slices.Sorted(maps.Keys(mounts)) {
		template.Spec.Volumes = append(template.Spec.Volumes, mounts[dir])
	}
	for i := range template.Spec.Containers {
		c := &template.Spec.Containers[i]
		// The agent's own container gets none of Tether's environment and
		// none of its store's Secrets: its programs see only what the
		// template gives them.
		if agent.Spec.AgentContainer != "" && c.Name == agent.Spec.AgentContainer {
			continue
		}
		c.Env = withEnv(c.Env, env)
		for _, dir := range slices.Sorted(maps.Keys(mounts)) {
			if !mountsAt(c, dir) {
				c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: mounts[dir].Name, MountPath: dir, ReadOnly: true})
			}
		}
	}
	replicas := int32(1)
	if agent.Spec.Replicas != nil {
		replicas = *agent.Spec.Replicas
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: agent.Name, Namespace: agent.Namespace, Labels: workerLabels(agent),
			Annotations: map[string]string{templateHashAnnotation: hashTemplate(template)},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: agent.Name}},
			Template: *template,
		},
	}, nil
}

func workerEnv(agent *tetherv1alpha1.Agent) []corev1.EnvVar {
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	return []corev1.EnvVar{
		{Name: EnvPodName, ValueFrom: field("metadata.name")},
		{Name: EnvPodNamespace, ValueFrom: field("metadata.namespace")},
		{Name: EnvPodUID, ValueFrom: field("metadata.uid")},
		{Name: EnvPodIP, ValueFrom: field("status.podIP")},
		{Name: EnvAgent, Value: agent.Name},
		{Name: EnvLeaseDurationSeconds, Value: strconv.Itoa(int(agent.Spec.LeaseDurationSeconds))},
		{Name: EnvRuntimePort, Value: strconv.Itoa(int(agent.Spec.RuntimePort))},
	}
}

// withEnv appends the variables the container does not set itself.
func withEnv(existing, add []corev1.EnvVar) []corev1.EnvVar {
	set := make(map[string]bool, len(existing))
	for _, e := range existing {
		set[e.Name] = true
	}
	out := append([]corev1.EnvVar(nil), existing...)
	for _, e := range add {
		if !set[e.Name] {
			out = append(out, e)
		}
	}
	return out
}

func hashTemplate(template *corev1.PodTemplateSpec) string {
	data, err := json.Marshal(template)
	if err != nil {
		// A PodTemplateSpec always marshals; an empty hash forces an update.
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}
