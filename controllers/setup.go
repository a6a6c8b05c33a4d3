package controllers

import (
	"context"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
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
}

// Setup registers the Agent and Conversation controllers with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 1
	}
	conv := &ConversationReconciler{
		Client: mgr.GetClient(), Clock: opts.Clock, NotReadyGrace: opts.NotReadyGrace,
		Recorder: mgr.GetEventRecorder("tether-conversation-controller"),
	}
	if err := conv.SetupWithManager(ctx, mgr, opts.Concurrency); err != nil {
		return err
	}
	agent := &AgentReconciler{Client: mgr.GetClient(), Clock: opts.Clock}
	return agent.SetupWithManager(mgr, opts.Concurrency)
}
