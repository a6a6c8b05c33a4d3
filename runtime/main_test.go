package runtime_test

import (
	"fmt"
	"os"
	"testing"

	"tether.dev/tether/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	var err error
	env, err = testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil && code == 0 {
		code = 1
	}
	os.Exit(code)
}
