package gateway_test

import (
	"testing"

	"tether.dev/tether/internal/testing/testenv"
	"tether.dev/tether/internal/testing/testworker"
)

// env is a real control plane with the real controllers running in this
// process; the tests start real runtimes on loopback addresses (pods are
// objects whose status.podIP is that address) and real gateways in front.
var env *testenv.Env

func TestMain(m *testing.M) {
	testworker.Main(m, &env)
}
