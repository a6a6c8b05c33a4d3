package v1alpha1_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// awaitingStatus is a Conversation status as an owner runtime writes it while
// a human is asked to approve.
func awaitingStatus() tetherv1alpha1.ConversationStatus {
	asked := metav1.NewTime(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	acquired := metav1.NewMicroTime(asked.Add(-time.Minute))
	return tetherv1alpha1.ConversationStatus{
		Phase: tetherv1alpha1.PhaseAwaitingInput,
		Prompt: &tetherv1alpha1.Prompt{
			ID: "approve-refund", Text: "Refund 120 EUR to order 1234?",
			Options: []string{"approve", "reject"}, AskedAt: asked, Sequence: 7,
		},
		Owner: &tetherv1alpha1.OwnerPod{Name: "approvals-7d9f-x2k4", UID: "0b7c5a52-4f0e-4a57-9a1e-3f7a1c2d9e10", IP: "127.0.0.2", Port: 7070},
		Lease: &tetherv1alpha1.ConversationLease{
			Holder: "approvals-7d9f-x2k4", Epoch: 3, AcquireTime: &acquired, DurationSeconds: 10,
		},
		LastSequence:    7,
		RescheduleCount: 2,
	}
}

// getTable fetches one object as the server-side table that kubectl get
// asks for.
func getTable(t *testing.T, path string) *metav1.Table {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	body, err := cs.Discovery().RESTClient().Get().AbsPath(path).
		// The Accept header kubectl get sends.
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json").
		DoRaw(context.Background())
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		t.Fatalf("not a Table: %v\n%s", err, body)
	}
	if table.Kind != "Table" {
		t.Fatalf("got kind %q, want Table", table.Kind)
	}
	return &table
}

func TestConversationPrintColumns(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	conv := &tetherv1alpha1.Conversation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "refund-1234"},
		Spec: tetherv1alpha1.ConversationSpec{
			AgentRef: tetherv1alpha1.AgentReference{Name: "approvals"},
			Subjects: []string{"alice"},
		},
	}
	if err := env.Client.Create(ctx, conv); err != nil {
		t.Fatal(err)
	}
	conv.Status = awaitingStatus()
	if err := env.Client.Status().Update(ctx, conv); err != nil {
		t.Fatal(err)
	}

	table := getTable(t, fmt.Sprintf("/apis/tether.dev/v1alpha1/namespaces/%s/conversations/%s", ns, conv.Name))
	var columns []string
	wide := map[string]bool{}
	for _, c := range table.ColumnDefinitions {
		columns = append(columns, c.Name)
		wide[c.Name] = c.Priority > 0
	}
	wantColumns := []string{"Name", "Agent", "Phase", "Owner", "Prompt", "Reschedules", "Epoch", "Seq", "Age"}
	if diff := cmp.Diff(wantColumns, columns); diff != "" {
		t.Fatalf("columns (-want +got):\n%s", diff)
	}
	if !wide["Epoch"] || !wide["Seq"] || wide["Prompt"] {
		t.Errorf("Epoch and Seq belong to -o wide only, Prompt to the default view; priorities: %v", wide)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("got %d rows, want 1", len(table.Rows))
	}
	cells := table.Rows[0].Cells
	// Age is relative to now; everything before it is exact. JSON numbers
	// decode as float64.
	want := []any{"refund-1234", "approvals", "AwaitingInput", "approvals-7d9f-x2k4", "Refund 120 EUR to order 1234?", float64(2), float64(3), float64(7)}
	if diff := cmp.Diff(want, cells[:len(want)]); diff != "" {
		t.Errorf("row (-want +got):\n%s", diff)
	}
}

func TestAgentPrintColumns(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	agent := fromYAML(t, ns, validAgent)
	if err := env.Client.Create(ctx, agent); err != nil {
		t.Fatal(err)
	}
	var a tetherv1alpha1.Agent
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(agent), &a); err != nil {
		t.Fatal(err)
	}
	a.Status = tetherv1alpha1.AgentStatus{Replicas: 3, ReadyReplicas: 2, Conversations: 150, Capacity: 200, FreeCapacity: 50}
	if err := env.Client.Status().Update(ctx, &a); err != nil {
		t.Fatal(err)
	}
	table := getTable(t, fmt.Sprintf("/apis/tether.dev/v1alpha1/namespaces/%s/agents/%s", ns, a.Name))
	var columns []string
	for _, c := range table.ColumnDefinitions {
		columns = append(columns, c.Name)
	}
	if diff := cmp.Diff([]string{"Name", "Ready", "Conversations", "Capacity", "Age"}, columns); diff != "" {
		t.Fatalf("columns (-want +got):\n%s", diff)
	}
	want := []any{"approvals", float64(2), float64(150), float64(200)}
	if diff := cmp.Diff(want, table.Rows[0].Cells[:len(want)]); diff != "" {
		t.Errorf("row (-want +got):\n%s", diff)
	}
}
