package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"tether.dev/tether/protocol"
)

// probeAgent runs sdk/python/examples/credentials_probe.py the way Tether
// runs agent code of an image of your own (spec.agentContainer).
const probeAgent = `apiVersion: tether.dev/v1alpha1
kind: Agent
metadata: {name: probe, namespace: default}
spec:
  replicas: 1
  leaseDurationSeconds: 10
  runtimePort: 8080
  agentContainer: agent
  template:
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: agent
          image: tether-python-agent:0.1.0
          imagePullPolicy: Never
          command: [/usr/bin/python3, /sdk/examples/credentials_probe.py]
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`

// probeControl runs the same probe once in a plain pod of the runtime's
// ServiceAccount, token mounted as Kubernetes does by default: it must
// find the token and be let in, or the probe proves nothing.
const probeControl = `apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: default}
spec:
  serviceAccountName: tether-runtime
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: probe
      image: tether-python-agent:0.1.0
      imagePullPolicy: Never
      command: [/usr/bin/python3, /sdk/examples/credentials_probe.py, --once, /dev/termination-log]
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`

type probeReport struct {
	Tokens        []string `json:"tokens"`
	CredentialEnv []string `json:"credentialEnv"`
	API           any      `json:"api"`
}

// TestAgentCodeHasNoCredentials: an agent program started by the runtime
// looks for Kubernetes credentials and tries the API server with what it
// finds: it finds no token and no credential in its environment, and the
// API server refuses it. The same probe in a pod that mounts the runtime's
// token finds it and is let in.
func TestAgentCodeHasNoCredentials(t *testing.T) {
	c := need(t)
	c.apply(t, probeAgent)
	t.Cleanup(func() { _, _ = c.run("kubectl", "delete", "agent", "probe", "--wait=false") })
	eventually(t, 120*time.Second, "the probe Agent's pod ready", func() bool {
		out, _ := c.run("kubectl", "get", "agent", "probe", "-o", "jsonpath={.status.readyReplicas}")
		return out == "1"
	})
	seq++
	name := fmt.Sprintf("probe-%d-%d", time.Now().Unix()%100000, seq)
	c.apply(t, fmt.Sprintf("apiVersion: tether.dev/v1alpha1\nkind: Conversation\nmetadata: {name: %s, namespace: default}\n"+
		"spec: {agentRef: {name: probe}, subjects: [alice], initialInput: look around}\n", name))
	r := c.connect(t, name)
	f, _ := r.wait(t, "the probe's report", 1, func(f protocol.ServerFrame) bool {
		return f.Type == protocol.TypeEvent && f.Event == protocol.EventAssistantMessage
	})
	var text protocol.TextData
	var agent probeReport
	if err := json.Unmarshal(f.Data, &text); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(text.Text), &agent); err != nil {
		t.Fatalf("the probe said %q: %v", text.Text, err)
	}
	t.Logf("agent program under Tether: %s", text.Text)
	status, _ := agent.API.(float64)
	if len(agent.Tokens) != 0 || len(agent.CredentialEnv) != 0 || (status != 401 && status != 403) {
		t.Fatalf("the agent program found credentials or got in: %+v", agent)
	}

	control := fmt.Sprintf("probe-control-%d", seq)
	c.apply(t, fmt.Sprintf(probeControl, control))
	t.Cleanup(func() { _, _ = c.run("kubectl", "delete", "pod", control, "--wait=false") })
	eventually(t, 90*time.Second, "the control probe done", func() bool {
		out, _ := c.run("kubectl", "get", "pod", control, "-o", "jsonpath={.status.phase}")
		return out == "Succeeded" || out == "Failed"
	})
	out := c.kubectl(t, "get", "pod", control, "-o", "jsonpath={.status.containerStatuses[0].state.terminated.message}")
	t.Logf("the same probe in a pod with the token: %s", out)
	var plain probeReport
	if err := json.Unmarshal([]byte(out), &plain); err != nil {
		t.Fatalf("the control probe said %q: %v", out, err)
	}
	if status, _ := plain.API.(float64); !slices.Contains(plain.Tokens, "/var/run/secrets/kubernetes.io/serviceaccount/token") || status != 200 {
		t.Fatalf("the control probe did not find and use the token: %+v", plain)
	}
}
