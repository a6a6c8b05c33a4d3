package runtime_test

import (
	"testing"

	"tether.dev/tether/internal/testing/testenv"
	"tether.dev/tether/internal/testing/testworker"
)

// env is a real control plane; the real controllers run against it in this
// process, as do the runtimes the tests start. There is no kubelet: pods are
// objects whose status.podIP the tests set to the loopback address their
// runtime listens on.
var env *testenv.Env

func TestMain(m *testing.M) {
	testworker.Main(m, &env)
}
