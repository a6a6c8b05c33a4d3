package v1alpha1_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	sigsyaml "sigs.k8s.io/yaml"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/protocol"
)

// TestCRDLimitsAreTheCodesLimits: the limits the CRDs enforce (written as
// kubebuilder markers, which cannot name a constant) are the ones the code
// defines once, in protocol, and enforces on the wire and in the event log.
func TestCRDLimitsAreTheCodesLimits(t *testing.T) {
	for _, tc := range []struct {
		crd, path string
		want      int
	}{
		{"conversations", "spec.subjects.items", tetherv1alpha1.MaxSubjectLength},
		{"conversations", "status.prompt.id", tetherv1alpha1.MaxPromptIDLength},
		{"conversationlogchunks", "events.items.type", eventlog.MaxTypeLength},
		{"conversationlogchunks", "events.items.clientId", eventlog.MaxClientIDLength},
		{"conversationlogs", "spec.tail.items.type", eventlog.MaxTypeLength},
		{"conversationlogs", "spec.tail.items.clientId", eventlog.MaxClientIDLength},
	} {
		if got := maxLength(t, tc.crd, tc.path); got != tc.want {
			t.Errorf("%s %s: maxLength %d in the CRD, %d in the code", tc.crd, tc.path, got, tc.want)
		}
	}
	if tetherv1alpha1.MaxPromptIDLength != protocol.MaxPromptIDBytes || eventlog.MaxClientIDLength != protocol.MaxIDBytes ||
		tetherv1alpha1.MaxSubjectLength != protocol.MaxSubjectBytes || eventlog.MaxTypeLength != protocol.MaxEventTypeBytes {
		t.Fatal("a limit is defined twice")
	}
}

// maxLength reads the maxLength of the property at path (dot-separated,
// "items" for an array's elements) in a generated CRD's schema.
func maxLength(t *testing.T, crd, path string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", "tether.dev_"+crd+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := sigsyaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	node := doc["spec"].(map[string]any)["versions"].([]any)[0].(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)
	for _, step := range strings.Split(path, ".") {
		var next any
		if step == "items" {
			next = node["items"]
		} else if props, ok := node["properties"].(map[string]any); ok {
			next = props[step]
		}
		n, ok := next.(map[string]any)
		if !ok {
			t.Fatalf("%s: no %s in the schema at %s", crd, step, path)
		}
		node = n
	}
	n, ok := node["maxLength"].(float64)
	if !ok {
		t.Fatalf("%s %s has no maxLength", crd, path)
	}
	return int(n)
}
