// Package bench measures the socket path three ways in one run: clients
// straight to a runtime, through a minimal proxy (minproxy: the floor any
// proxy pays on this machine), and through the gateway. The control plane is
// envtest with the real controllers; the runtime runs the echo agent on the
// memory store, in this process, on a loopback address; the gateway and the
// minimal proxy are built and run as processes of their own, so their CPU
// time and memory are theirs alone.
//
//	go test -run '^$' -bench . -benchtime 20000x ./test/bench/
//
// docs/benchmarks.md has the figures and how to read them.
package bench
