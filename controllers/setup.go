package controllers

import (
	"context"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/stores"
)

// Options tune the controllers.
type Options struct {
	// Concurrency is the number of reconciles each controller runs at once.
	Concurrency int
	// NotReadyGrace is how long an owner pod may be not ready before its
	// conversations move.
	NotReadyGrace time.Duration
	// Clock is the time source; the real clock when nil.
	Clock clock.PassiveClock
	// Runtime is added to every templated Agent's pods.
	Runtime RuntimeWiring
}

// Setup registers the Agent and Conversation controllers with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 1
	}
	// Secrets are read straight from the API server when a log is deleted,
	// never cached: the manager has get on Secrets, not list or watch.
	secrets := mgr.GetAPIReader()
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return err
	}
	health, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return err
	}
	visibility := &APIVisibility{Interval: 500 * time.Millisecond, Clock: clock.RealClock{}, Probe: func(ctx context.Context) error {
		return health.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	}}
	if err := mgr.Add(visibility); err != nil {
		return err
	}
	// One count of slots for both controllers, fed by the Conversation
	// informer; the Agent controller hears of each change it counts.
	changed := make(chan event.GenericEvent, 1024)
	slots := newSlotTracker()
	slots.changed = changed
	if err := slots.register(ctx, mgr); err != nil {
		return err
	}
	conv := &ConversationReconciler{
		slots:  slots,
		Client: mgr.GetClient(), Clock: opts.Clock, NotReadyGrace: opts.NotReadyGrace, Visibility: visibility,
		Recorder: mgr.GetEventRecorder("tether-conversation-controller"),
		OpenStore: func(ctx context.Context, spec tetherv1alpha1.StoreSpec, namespace string) (eventlog.Log, error) {
			return stores.Open(ctx, spec, namespace, direct, stores.APISecrets{Reader: secrets})
		},
	}
	if err := conv.SetupWithManager(ctx, mgr, opts.Concurrency); err != nil {
		return err
	}
	agent := &AgentReconciler{Client: mgr.GetClient(), Clock: opts.Clock, Wiring: opts.Runtime, slots: slots, rebalanced: map[client.ObjectKey]time.Time{},
		statusWritten: map[client.ObjectKey]time.Time{}}
	return agent.SetupWithManager(mgr, opts.Concurrency, changed)
}
