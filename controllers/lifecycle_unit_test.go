package controllers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

func awaitingSince(asked time.Time, convIdle *int32) *tetherv1alpha1.Conversation {
	return &tetherv1alpha1.Conversation{
		Spec: tetherv1alpha1.ConversationSpec{IdleSuspendSeconds: convIdle},
		Status: tetherv1alpha1.ConversationStatus{
			Phase:  tetherv1alpha1.PhaseAwaitingInput,
			Prompt: &tetherv1alpha1.Prompt{ID: "p", Text: "ok?", AskedAt: metav1.NewTime(asked)},
		},
	}
}

func TestIdleSuspendAt(t *testing.T) {
	agentIdle := &tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{IdleSuspendSeconds: ptr.To[int32](60)}}
	noPolicy := &tetherv1alpha1.Agent{}
	running := awaitingSince(t0, nil)
	running.Status.Phase = tetherv1alpha1.PhaseRunning
	attached := awaitingSince(t0, nil)
	attached.Status.Attached = true
	withActivity := func(at time.Time) *tetherv1alpha1.Conversation {
		c := awaitingSince(t0, nil)
		c.Status.LastActiveTime = ptr.To(metav1.NewTime(at))
		return c
	}
	cases := []struct {
		name   string
		conv   *tetherv1alpha1.Conversation
		agent  *tetherv1alpha1.Agent
		want   time.Time
		wantOK bool
	}{
		{"the Agent's policy", awaitingSince(t0, nil), agentIdle, t0.Add(time.Minute), true},
		{"the Conversation's own policy wins", awaitingSince(t0, ptr.To[int32](600)), agentIdle, t0.Add(10 * time.Minute), true},
		{"no policy", awaitingSince(t0, nil), noPolicy, time.Time{}, false},
		{"Agent gone, own policy", awaitingSince(t0, ptr.To[int32](30)), nil, t0.Add(30 * time.Second), true},
		{"not awaiting input", running, agentIdle, time.Time{}, false},
		{"a client attached is never idle", attached, agentIdle, time.Time{}, false},
		{"woken or left after the prompt: from then", withActivity(t0.Add(5 * time.Minute)), agentIdle, t0.Add(6 * time.Minute), true},
		{"activity before the prompt: from the prompt", withActivity(t0.Add(-5 * time.Minute)), agentIdle, t0.Add(time.Minute), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := idleSuspendAt(tc.conv, tc.agent)
			if ok != tc.wantOK || !got.Equal(tc.want) {
				t.Errorf("got %s, %v; want %s, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestDeleteAt(t *testing.T) {
	finished := func(phase tetherv1alpha1.ConversationPhase, ttl *int32, completed *time.Time, ready *time.Time) *tetherv1alpha1.Conversation {
		c := &tetherv1alpha1.Conversation{
			ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))},
			Spec:       tetherv1alpha1.ConversationSpec{TTLSecondsAfterFinished: ttl},
			Status:     tetherv1alpha1.ConversationStatus{Phase: phase},
		}
		if completed != nil {
			c.Status.CompletionTime = ptr.To(metav1.NewTime(*completed))
		}
		if ready != nil {
			c.Status.Conditions = []metav1.Condition{{Type: string(tetherv1alpha1.ConditionReady), LastTransitionTime: metav1.NewTime(*ready)}}
		}
		return c
	}
	ttl := ptr.To[int32](60)
	earlier := t0.Add(-time.Minute)
	cases := []struct {
		name   string
		conv   *tetherv1alpha1.Conversation
		want   time.Time
		wantOK bool
	}{
		{"from completionTime", finished(tetherv1alpha1.PhaseSucceeded, ttl, &t0, &earlier), t0.Add(time.Minute), true},
		{"failed ones too", finished(tetherv1alpha1.PhaseFailed, ttl, &t0, nil), t0.Add(time.Minute), true},
		{"without completionTime, from the Ready transition", finished(tetherv1alpha1.PhaseSucceeded, ttl, nil, &earlier), t0, true},
		{"without either, from creation", finished(tetherv1alpha1.PhaseSucceeded, ttl, nil, nil), t0.Add(-59 * time.Minute), true},
		{"no TTL", finished(tetherv1alpha1.PhaseSucceeded, nil, &t0, nil), time.Time{}, false},
		{"not finished", finished(tetherv1alpha1.PhaseRunning, ttl, nil, nil), time.Time{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := deleteAt(tc.conv)
			if ok != tc.wantOK || !got.Equal(tc.want) {
				t.Errorf("got %s, %v; want %s, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestRevokeAndAssignMoveTheEpoch(t *testing.T) {
	conv := awaitingSince(t0, nil)
	conv.Status.Owner = &tetherv1alpha1.OwnerPod{Name: "a", UID: "uid-a"}
	conv.Status.Lease = &tetherv1alpha1.ConversationLease{Holder: "a", Epoch: 4}
	revoke(conv, tetherv1alpha1.PhaseRescheduling, tetherv1alpha1.ReasonOwnerPodDeleted, "gone", t0)
	if conv.Status.Owner != nil || conv.Status.Lease.Holder != "" || conv.Status.Lease.Epoch != 5 || conv.Status.Prompt == nil {
		t.Fatalf("after revoke: %+v", conv.Status)
	}
	b := pod("b")
	agent := &tetherv1alpha1.Agent{Spec: tetherv1alpha1.AgentSpec{LeaseDurationSeconds: 10, RuntimePort: 7070}}
	assign(conv, b, agent, t0)
	want := &tetherv1alpha1.ConversationLease{Holder: "b", Epoch: 6, AcquireTime: ptr.To(metav1.NewMicroTime(t0)), DurationSeconds: 10}
	if diff := cmp.Diff(want, conv.Status.Lease); diff != "" {
		t.Errorf("lease (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&tetherv1alpha1.OwnerPod{Name: "b", UID: "uid-b", IP: "127.0.0.10", Port: 7070}, conv.Status.Owner); diff != "" {
		t.Errorf("owner (-want +got):\n%s", diff)
	}
	if conv.Status.Phase != tetherv1alpha1.PhaseRescheduling {
		t.Errorf("phase %s: assignment must leave it to the new owner to claim", conv.Status.Phase)
	}
}

func TestComputeAgentStatus(t *testing.T) {
	agent := &tetherv1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Name: "chat", Generation: 3}, Spec: tetherv1alpha1.AgentSpec{ConversationsPerPod: 10}}
	a, b, c := pod("a"), pod("b"), pod("c", notReadySince(t0))
	workers := []workerPod{
		{pod: a, lease: lease(a, t0.Add(-2*time.Second))},
		{pod: b, lease: lease(b, t0.Add(-5*time.Second))},
		{pod: c, lease: lease(c, t0)},
	}
	status, recheck := computeAgentStatus(agent, workers, map[string]int32{"a": 4, "b": 10, "c": 1}, "tether.dev/agent=chat", t0)
	want := tetherv1alpha1.AgentStatus{
		Replicas: 3, ReadyReplicas: 2, Conversations: 15, Capacity: 20, FreeCapacity: 6,
		Selector: "tether.dev/agent=chat", ObservedGeneration: 3,
		Conditions: []metav1.Condition{{
			Type: string(tetherv1alpha1.ConditionReady), Status: metav1.ConditionTrue, Reason: string(tetherv1alpha1.ReasonPodsReady),
			Message: "2 of 3 pods ready, 6 free slots", ObservedGeneration: 3, LastTransitionTime: metav1.NewTime(t0),
		}},
	}
	if diff := cmp.Diff(want, status); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if recheck != 5*time.Second {
		t.Errorf("recheck after %s, want 5s (b's Lease expiry)", recheck)
	}

	full, _ := computeAgentStatus(agent, workers[1:2], map[string]int32{"b": 10}, "", t0)
	if c := full.Conditions[0]; c.Reason != string(tetherv1alpha1.ReasonFull) || c.Status != metav1.ConditionFalse {
		t.Errorf("a full Agent: %+v", c)
	}
	none, _ := computeAgentStatus(agent, nil, nil, "", t0)
	if c := none.Conditions[0]; c.Reason != string(tetherv1alpha1.ReasonNoReadyPods) || c.Message != "no worker pods" {
		t.Errorf("an Agent without pods: %+v", c)
	}
}

func TestDesiredDeploymentInjectsEnvOnce(t *testing.T) {
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: "ns"},
		Spec: tetherv1alpha1.AgentSpec{LeaseDurationSeconds: 10, RuntimePort: 7070, Template: &corev1.PodTemplateSpec{
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "runtime", Env: []corev1.EnvVar{{Name: EnvAgent, Value: "custom"}}},
				{Name: "sidecar"},
			}},
		}},
	}
	d := mustDeployment(t, agent, RuntimeWiring{})
	if *d.Spec.Replicas != 1 {
		t.Errorf("replicas %d, want the default 1", *d.Spec.Replicas)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		names := map[string]int{}
		for _, e := range c.Env {
			names[e.Name]++
		}
		for _, n := range []string{EnvPodName, EnvPodNamespace, EnvPodUID, EnvPodIP, EnvAgent, EnvLeaseDurationSeconds, EnvRuntimePort} {
			if names[n] != 1 {
				t.Errorf("container %s has %s %d times", c.Name, n, names[n])
			}
		}
	}
	if got := d.Spec.Template.Spec.Containers[0].Env[0]; got.Value != "custom" {
		t.Errorf("the user's own %s was replaced: %+v", EnvAgent, got)
	}
	// The same Agent renders the same hash; a changed template another.
	if h := mustDeployment(t, agent, RuntimeWiring{}).Annotations[templateHashAnnotation]; h != d.Annotations[templateHashAnnotation] || h == "" {
		t.Errorf("hash not stable: %q vs %q", h, d.Annotations[templateHashAnnotation])
	}
	agent.Spec.Template.Spec.Containers[1].Image = "sidecar:v2"
	if mustDeployment(t, agent, RuntimeWiring{}).Annotations[templateHashAnnotation] == d.Annotations[templateHashAnnotation] {
		t.Error("a changed template kept its hash")
	}
	if diff := cmp.Diff(workerLabels(agent), d.Spec.Template.Labels, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("pod labels (-want +got):\n%s", diff)
	}
}

func TestRuntimeWiring(t *testing.T) {
	wiring := RuntimeWiring{GatewayIdentity: "system:serviceaccount:tether-system:tether-gateway", ServiceAccount: "tether-runtime"}
	tests := []struct {
		name   string
		wiring RuntimeWiring
		spec   corev1.PodSpec
		want   corev1.PodSpec
	}{
		{"nothing to add", RuntimeWiring{}, corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime"}}},
			corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime"}}}},
		{"a bare template", wiring, corev1.PodSpec{Containers: []corev1.Container{{Name: "runtime"}, {Name: "sidecar"}}},
			corev1.PodSpec{ServiceAccountName: "tether-runtime", Containers: []corev1.Container{{Name: "runtime"}, {Name: "sidecar"}}}},
		{"the template's own account is kept", wiring,
			corev1.PodSpec{ServiceAccountName: "custom", Containers: []corev1.Container{{Name: "runtime"}}},
			corev1.PodSpec{ServiceAccountName: "custom", Containers: []corev1.Container{{Name: "runtime"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec.DeepCopy()
			tt.wiring.wire(spec)
			if diff := cmp.Diff(tt.want, *spec); diff != "" {
				t.Errorf("pod spec (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff([]corev1.EnvVar{{Name: EnvGatewayIdentity, Value: wiring.GatewayIdentity}}, wiring.env()); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
}
