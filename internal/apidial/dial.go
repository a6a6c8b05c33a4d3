package apidial

import (
	"context"
	"math/rand/v2"
	"net"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
)

// Defaults for Dialer.
const (
	DefaultInterval = 100 * time.Millisecond
	DefaultPatience = 30 * time.Second
)

// Dialer dials again while the address refuses connections.
type Dialer struct {
	// Interval between attempts [DefaultInterval], plus up to as much
	// again at random, so that a fleet of clients does not dial in step.
	Interval time.Duration
	// Patience is the longest a dial waits for the address to listen again
	// [DefaultPatience]; the request's context may end it sooner.
	Patience time.Duration
	// Dial makes one attempt [client-go's own dialer: net.Dialer with a
	// 30 s timeout and keep-alive].
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Install makes cfg's requests dial through a Dialer with the defaults.
func Install(cfg *rest.Config) *rest.Config {
	cfg.Dial = (&Dialer{}).DialContext
	return cfg
}

// DialContext dials address, again after each refusal, until it connects,
// fails otherwise, ctx ends or Patience runs out; it returns the last error.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	dial, interval, patience := d.Dial, d.Interval, d.Patience
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	if patience <= 0 {
		patience = DefaultPatience
	}
	giveUp := time.Now().Add(patience)
	for {
		conn, err := dial(ctx, network, address)
		if err == nil || !utilnet.IsConnectionRefused(err) {
			return conn, err
		}
		wait := interval + rand.N(interval) //nolint:gosec // jitter, not a secret
		if time.Now().Add(wait).After(giveUp) {
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}
