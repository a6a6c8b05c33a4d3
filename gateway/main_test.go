package gateway_test

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"tether.dev/tether/controllers"
	"tether.dev/tether/internal/testenv"
)

// env is a real control plane with the real controllers running in this
// process; the tests start real runtimes on loopback addresses (pods are
// objects whose status.podIP is that address) and real gateways in front.
var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	testenv.Main(m, &env, func(e *testenv.Env) (func() error, error) {
		mgr, err := ctrl.NewManager(e.Config, ctrl.Options{
			Scheme: e.Scheme, Cache: controllers.CacheOptions(),
			Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := controllers.Setup(ctx, mgr, controllers.Options{Concurrency: 4, NotReadyGrace: 2 * time.Second}); err != nil {
			cancel()
			return nil, err
		}
		done := make(chan error, 1)
		go func() { done <- mgr.Start(ctx) }()
		return func() error { cancel(); return <-done }, nil
	})
}
