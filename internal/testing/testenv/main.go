package testenv

import (
	"fmt"
	"os"
	"testing"
)

// Main runs a package's tests against one control plane shared by all of
// them, stored in *env, and exits. Each setup function runs once the control
// plane is up (to start controllers, say) and returns how to stop what it
// started.
func Main(m *testing.M, env **Env, setups ...func(*Env) (stop func() error, err error)) {
	os.Exit(run(m, env, setups))
}

func run(m *testing.M, env **Env, setups []func(*Env) (func() error, error)) (code int) {
	e, err := New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*env = e
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
			code = max(code, 1)
		}
	}()
	for _, setup := range setups {
		stop, err := setup(e)
		if err != nil {
			fmt.Fprintln(os.Stderr, "setting up the tests:", err)
			return 1
		}
		defer func() {
			if err := stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stopping what the tests started:", err)
				code = max(code, 1)
			}
		}()
	}
	return m.Run()
}
