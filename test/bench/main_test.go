package bench

import (
	"flag"
	"os"
	"testing"

	"tether.dev/tether/internal/testing/testenv"
	"tether.dev/tether/internal/testing/testworker"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	// Without -bench there is nothing here to run: skip the control plane.
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	testworker.Main(m, &env)
}
