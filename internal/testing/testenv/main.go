package testenv

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Main runs a package's tests against one control plane shared by all of
// them, stored in *env, and exits. Each setup function runs once the control
// plane is up (to start controllers, say) and returns how to stop what it
// started. Once everything is stopped, no goroutine the tests started may
// be left (goleak), but for the process-wide ones of the libraries below.
func Main(m *testing.M, env **Env, setups ...func(*Env) (stop func() error, err error)) {
	code := run(m, env, setups)
	if code == 0 {
		if err := goleak.Find(leaksIgnored...); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left after the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// leaksIgnored are goroutines libraries start once per process and never
// stop: klog's flush daemon, the watch-list and metrics workers client-go
// and controller-runtime start at package init, and the gateway's socket
// readiness poller (one epoll wait for every idle socket of the process).
var leaksIgnored = []goleak.Option{
	goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	goleak.IgnoreAnyFunction("tether.dev/tether/gateway.(*poller).loop"),
	goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
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
