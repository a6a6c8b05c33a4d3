package eventlogtest

import (
	"context"
	"sync"

	"tether.dev/tether/eventlog"
)

// Gate freezes a store client before one of its requests, the way SIGSTOP
// freezes an owner's process between two writes, until the test thaws it.
// A backend's gated client calls Enter before every request it makes.
type Gate struct {
	mu      sync.Mutex
	calls   int
	stopAt  int // the request that freezes, counted from Arm; 0: none
	frozen  chan struct{}
	thawed  chan struct{}
	isFroze bool
}

// NewGate returns a gate that lets every request through.
func NewGate() *Gate { return &Gate{} }

// Enter is called by the gated client before each request to the store; it
// blocks while the gate holds it frozen.
func (g *Gate) Enter() {
	g.mu.Lock()
	g.calls++
	if g.stopAt == 0 || g.calls != g.stopAt {
		g.mu.Unlock()
		return
	}
	g.isFroze = true
	close(g.frozen)
	thawed := g.thawed
	g.mu.Unlock()
	<-thawed
}

// Arm makes the n-th request from now (n >= 1) freeze until Thaw, and
// returns a channel closed once it has.
func (g *Gate) Arm(n int) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls, g.stopAt, g.isFroze = 0, n, false
	g.frozen, g.thawed = make(chan struct{}), make(chan struct{})
	return g.frozen
}

// Thaw lets a frozen request go on and disarms the gate.
func (g *Gate) Thaw() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.thawed != nil {
		close(g.thawed)
		g.thawed = nil
	}
	g.stopAt = 0
}

// gatedLog gates a log between whole operations, for a store whose
// operations are atomic in process.
type gatedLog struct {
	eventlog.Log
	gate *Gate
}

func (g *gatedLog) Claim(ctx context.Context, k eventlog.Key, epoch int64) (eventlog.Bounds, error) {
	g.gate.Enter()
	return g.Log.Claim(ctx, k, epoch)
}

func (g *gatedLog) Append(ctx context.Context, k eventlog.Key, epoch int64, events []eventlog.Event) (int64, error) {
	g.gate.Enter()
	return g.Log.Append(ctx, k, epoch, events)
}

func (g *gatedLog) Trim(ctx context.Context, k eventlog.Key, epoch int64, keep int) error {
	g.gate.Enter()
	return g.Log.Trim(ctx, k, epoch, keep)
}
