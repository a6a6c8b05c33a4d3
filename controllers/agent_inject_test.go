package controllers

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog/stores"
)

func mustDeployment(t *testing.T, agent *tetherv1alpha1.Agent, w RuntimeWiring) *appsv1.Deployment {
	t.Helper()
	d, err := desiredDeployment(agent, w)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestInjectRuntime: an Agent naming its own image's container gets the
// runtime binary copied in by an init container, its container runs it as
// the spawner of its command, and the runtime runs in a container of its
// own, the only one with the pod's ServiceAccount token.
func TestInjectRuntime(t *testing.T) {
	agent := &tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{
		AgentContainer: "agent", LeaseDurationSeconds: 4, RuntimePort: 8080,
		Template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "agent", Image: "my-python-agent:1", Command: []string{"/usr/bin/python3", "/app/agent.py"}, Args: []string{"--model", "small"},
				Env: []corev1.EnvVar{{Name: "MODEL_KEY", Value: "the user's"}}},
			{Name: "sidecar", Image: "logs:1"},
		}}},
	}}
	d := mustDeployment(t, agent, RuntimeWiring{Image: "tether-runtime:0.1.0", GatewayIdentity: "system:serviceaccount:tether-system:tether-gateway"})
	spec := d.Spec.Template.Spec
	agentC := spec.Containers[0]
	if diff := cmp.Diff([]string{runtimeBinPath}, agentC.Command); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"--serve-spawner=" + spawnerSocket, "--agent-command=/usr/bin/python3", "--", "/app/agent.py", "--model", "small"}, agentC.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].Image != "tether-runtime:0.1.0" ||
		strings.Join(spec.InitContainers[0].Command, " ") != "/runtime --install="+runtimeBinPath {
		t.Fatalf("init containers %+v", spec.InitContainers)
	}
	if !mountsAt(&agentC, runtimeBinDir) || !mountsAt(&agentC, spawnerDir) {
		t.Fatalf("the agent container mounts %+v", agentC.VolumeMounts)
	}
	// The agent's container: its own environment only, and no token.
	if diff := cmp.Diff([]corev1.EnvVar{{Name: "MODEL_KEY", Value: "the user's"}}, agentC.Env); diff != "" {
		t.Errorf("the agent container's environment (-want +got):\n%s", diff)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Fatal("the pod's ServiceAccount token is mounted into every container")
	}
	for _, c := range append(spec.Containers, spec.InitContainers...) {
		if mountsAt(&c, apiAccessDir) != (c.Name == RuntimeContainer) {
			t.Errorf("container %s: token mounted %v", c.Name, mountsAt(&c, apiAccessDir))
		}
	}
	// The runtime's container: Tether's image, the spawner's socket, the
	// token, Tether's environment.
	if len(spec.Containers) != 3 || spec.Containers[2].Name != RuntimeContainer {
		t.Fatalf("containers %+v", spec.Containers)
	}
	runtimeC := spec.Containers[2]
	if runtimeC.Image != "tether-runtime:0.1.0" || strings.Join(runtimeC.Args, " ") != "--agent-spawner="+spawnerSocket || !mountsAt(&runtimeC, spawnerDir) {
		t.Fatalf("runtime container %+v", runtimeC)
	}
	env := map[string]bool{}
	for _, e := range runtimeC.Env {
		env[e.Name] = true
	}
	if !env[EnvPodName] || !env[EnvGatewayIdentity] {
		t.Fatalf("the runtime container's environment %+v", runtimeC.Env)
	}
	if spec.Containers[1].Command != nil {
		t.Fatalf("another container was wrapped: %+v", spec.Containers[1])
	}
	// The user's template is left as it was.
	if agent.Spec.Template.Spec.Containers[0].Command[0] != "/usr/bin/python3" {
		t.Fatal("the Agent's own template was changed")
	}
	for _, tc := range []struct {
		name  string
		agent func(*tetherv1alpha1.Agent)
		w     RuntimeWiring
	}{
		{"no such container", func(a *tetherv1alpha1.Agent) { a.Spec.AgentContainer = "nope" }, RuntimeWiring{Image: "r"}},
		{"no command", func(a *tetherv1alpha1.Agent) { a.Spec.Template.Spec.Containers[0].Command = nil }, RuntimeWiring{Image: "r"}},
		{"no runtime image", func(*tetherv1alpha1.Agent) {}, RuntimeWiring{}},
		{"the token mounted everywhere", func(a *tetherv1alpha1.Agent) { a.Spec.Template.Spec.AutomountServiceAccountToken = ptr.To(true) }, RuntimeWiring{Image: "r"}},
		{"a container named as the runtime's", func(a *tetherv1alpha1.Agent) {
			a.Spec.Template.Spec.Containers[1].Name = RuntimeContainer
		}, RuntimeWiring{Image: "r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := agent.DeepCopy()
			tc.agent(a)
			if _, err := desiredDeployment(a, tc.w); err == nil {
				t.Fatal("rendered a Deployment that cannot run")
			}
		})
	}
}

// TestStoreSecretsAreMountedForTheRuntime: the Secret keys an Agent's Redis
// store names are mounted where the runtime reads them, into the runtime's
// container and not the agent's.
func TestStoreSecretsAreMountedForTheRuntime(t *testing.T) {
	password := &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "redis-auth"}, Key: "password"}
	ca := &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "redis-ca"}, Key: "ca.crt"}
	agent := &tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{
		AgentContainer: "agent", LeaseDurationSeconds: 4, RuntimePort: 8080,
		Store: tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreRedis, Redis: &tetherv1alpha1.RedisStoreSpec{
			Addresses: []string{"redis:6379"}, PasswordSecretRef: password, TLS: &tetherv1alpha1.RedisTLSSpec{CASecretRef: ca},
		}},
		Template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "agent", Image: "my-agent:1", Command: []string{"/agent"}},
		}}},
	}}
	spec := mustDeployment(t, agent, RuntimeWiring{Image: "tether-runtime:0.1.0"}).Spec.Template.Spec
	var items []string
	for _, v := range spec.Volumes {
		if v.Name == storeSecretsVolume {
			for _, s := range v.Projected.Sources {
				for _, item := range s.Secret.Items {
					items = append(items, s.Secret.Name+":"+item.Key+"->"+item.Path)
				}
			}
		}
	}
	want := []string{"redis-auth:password->" + stores.MountedSecretPath(password), "redis-ca:ca.crt->" + stores.MountedSecretPath(ca)}
	if diff := cmp.Diff(want, items); diff != "" {
		t.Fatalf("mounted keys (-want +got):\n%s", diff)
	}
	for _, c := range spec.Containers {
		if mountsAt(&c, stores.MountDir) != (c.Name == RuntimeContainer) {
			t.Errorf("container %s: store Secrets mounted %v", c.Name, mountsAt(&c, stores.MountDir))
		}
	}
	// A kubernetes store names no Secret: nothing is mounted.
	agent.Spec.Store = tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreKubernetes}
	for _, v := range mustDeployment(t, agent, RuntimeWiring{Image: "r"}).Spec.Template.Spec.Volumes {
		if v.Name == storeSecretsVolume {
			t.Fatal("store Secrets mounted for a kubernetes store")
		}
	}
}

// TestRuntimeTLSIsMountedForTheRuntime: the namespace's serving key pair is
// mounted into the runtime's container, which is told where; the agent's
// container gets neither.
func TestRuntimeTLSIsMountedForTheRuntime(t *testing.T) {
	for _, agentContainer := range []string{"", "agent"} {
		agent := &tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{
			AgentContainer: agentContainer, LeaseDurationSeconds: 4, RuntimePort: 8080,
			Template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "agent", Image: "my-agent:1", Command: []string{"/agent"}},
			}}},
		}}
		spec := mustDeployment(t, agent, RuntimeWiring{Image: "tether-runtime:0.1.0", TLSSecret: "tether-runtime-tls"}).Spec.Template.Spec
		var secret string
		for _, v := range spec.Volumes {
			if v.Name == runtimeTLSVolume {
				secret = v.Secret.SecretName
			}
		}
		if secret != "tether-runtime-tls" {
			t.Fatalf("agentContainer %q: the key pair's volume names %q", agentContainer, secret)
		}
		for _, c := range spec.Containers {
			runsRuntime := agentContainer == "" || c.Name == RuntimeContainer
			told := false
			for _, e := range c.Env {
				told = told || e.Name == EnvRuntimeTLSDir && e.Value == runtimeTLSDir
			}
			if mountsAt(&c, runtimeTLSDir) != runsRuntime || told != runsRuntime {
				t.Errorf("agentContainer %q, container %s: key pair mounted %v, told %v", agentContainer, c.Name, mountsAt(&c, runtimeTLSDir), told)
			}
		}
	}
}

// TestAgentPodsSpreadOverNodes: an Agent's pods are spread over nodes
// unless its template places them itself.
func TestAgentPodsSpreadOverNodes(t *testing.T) {
	own := []corev1.TopologySpreadConstraint{{MaxSkew: 2, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.DoNotSchedule}}
	affinity := &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{}}
	for _, tc := range []struct {
		name     string
		spread   []corev1.TopologySpreadConstraint
		affinity *corev1.Affinity
		want     string // the topology key of the one constraint
	}{
		{name: "template says nothing", want: corev1.LabelHostname},
		{name: "template spreads itself", spread: own, want: "topology.kubernetes.io/zone"},
		{name: "template has an affinity", affinity: affinity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := &tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{
				LeaseDurationSeconds: 4, RuntimePort: 8080,
				Template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					TopologySpreadConstraints: tc.spread, Affinity: tc.affinity,
					Containers: []corev1.Container{{Name: "runtime", Image: "tether-runtime:0.1.0"}},
				}},
			}}
			agent.Name = "echoes"
			got := mustDeployment(t, agent, RuntimeWiring{Image: "tether-runtime:0.1.0"}).Spec.Template.Spec.TopologySpreadConstraints
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("a template with an affinity got a spread: %v", got)
				}
				return
			}
			if len(got) != 1 || got[0].TopologyKey != tc.want {
				t.Fatalf("spread %v, want one over %s", got, tc.want)
			}
			if tc.spread == nil && (got[0].WhenUnsatisfiable != corev1.ScheduleAnyway ||
				got[0].LabelSelector.MatchLabels[tetherv1alpha1.AgentLabel] != "echoes") {
				t.Fatalf("the default spread must be soft and select the Agent's pods: %+v", got[0])
			}
		})
	}
}
