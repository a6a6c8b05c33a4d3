package runtime_test

import (
	"os"
	"testing"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"tether.dev/tether/internal/testenv"
	"tether.dev/tether/internal/testworker"
)

// env is a real control plane; the real controllers run against it in this
// process, as do the runtimes the tests start. There is no kubelet: pods are
// objects whose status.podIP the tests set to the loopback address their
// runtime listens on.
var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	testenv.Main(m, &env, testworker.RunControllers)
}
