package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/await"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/runtime/agents"
)

// BenchmarkIdleWrites: the API writes a second a fleet makes with nothing
// happening, for 100 and then 1,000 idle conversations on the same two
// runtime pods (the kubernetes store, the real manager): invariant 6 says
// it grows with pods, not conversations. Each size is measured over 30 s
// once every conversation is Running; ns/op is meaningless here.
func BenchmarkIdleWrites(b *testing.B) {
	ctx := context.Background()
	ns := "bench-idle"
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		b.Fatal(err)
	}
	port := testworker.FreePort(b)
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "idle"},
		Spec: tetherv1alpha1.AgentSpec{
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: "idle"}},
			ConversationsPerPod: 1000, LeaseDurationSeconds: 10, RuntimePort: int32(port), //nolint:gosec // a port from the kernel
			Store: tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreKubernetes},
		},
	}
	if err := env.Client.Create(ctx, agent); err != nil {
		b.Fatal(err)
	}
	for i := range 2 {
		testworker.Start(b, env, testworker.Options{Namespace: ns, Agent: "idle", Name: fmt.Sprintf("idle-%d", i),
			IP: fmt.Sprintf("127.0.32.%d", i+1), Port: port, Handler: agents.Echo})
	}
	made := 0
	for _, n := range []int{100, 1000} {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := made + w; i < n; i += 16 {
					conv := &tetherv1alpha1.Conversation{
						ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("c-%04d", i)},
						Spec:       tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "idle"}, Subjects: []string{"bench"}},
					}
					if err := env.Client.Create(ctx, conv); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		made = n
		await.UntilEvery(b, 5*time.Minute, 500*time.Millisecond, fmt.Sprintf("%d conversations Running", n), func() bool {
			var list tetherv1alpha1.ConversationList
			if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
				return false
			}
			running := 0
			for _, c := range list.Items {
				if c.Status.Phase == tetherv1alpha1.PhaseRunning {
					running++
				}
			}
			return running == n
		})
		time.Sleep(5 * time.Second) // the claims' last writes
		before := apiWrites(b)
		const window = 30 * time.Second
		time.Sleep(window)
		perSecond := float64(apiWrites(b)-before) / window.Seconds()
		b.ReportMetric(perSecond, fmt.Sprintf("writes/s-%d-idle", n))
		b.Logf("%d idle conversations on 2 pods: %.2f API writes a second", n, perSecond)
	}
}
