package gateway_test

import (
	"os"
	"testing"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"tether.dev/tether/internal/testenv"
	"tether.dev/tether/internal/testworker"
)

// env is a real control plane with the real controllers running in this
// process; the tests start real runtimes on loopback addresses (pods are
// objects whose status.podIP is that address) and real gateways in front.
var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	testenv.Main(m, &env, testworker.RunControllers)
}
