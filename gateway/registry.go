package gateway

import (
	"context"
	"sync"

	"golang.org/x/time/rate"
)

// registry holds the open sessions: http.Server.Shutdown does not wait for
// hijacked connections, so draining goes through it.
type registry struct {
	mu       sync.Mutex
	sessions map[*session]struct{}
	running  sync.WaitGroup // goroutines of open and ending sessions
}

func (r *registry) add(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions[s] = struct{}{}
}

func (r *registry) remove(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sessions, s)
}

func (r *registry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

func (r *registry) all() []*session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*session, 0, len(r.sessions))
	for s := range r.sessions {
		out = append(out, s)
	}
	return out
}

// wait waits until every session's goroutines have returned, or ctx ends.
func (r *registry) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// subjectCounter bounds the sockets one subject holds open, and how fast it
// opens them.
type subjectCounter struct {
	mu       sync.Mutex
	counts   map[string]int
	limiters map[string]*rate.Limiter
}

// maxIdleLimiters is how many subjects' connect limiters are kept before
// those that are full again (idle) are forgotten.
const maxIdleLimiters = 10000

// allowConnect takes one of subject's connects per the rate; a limiter that
// has filled up again is as good as a new one, so the map is pruned of them
// when it grows.
func (c *subjectCounter) allowConnect(subject string, r rate.Limit, burst int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limiters == nil {
		c.limiters = map[string]*rate.Limiter{}
	}
	l := c.limiters[subject]
	if l == nil {
		if len(c.limiters) >= maxIdleLimiters {
			for s, old := range c.limiters {
				if old.Tokens() >= float64(old.Burst()) {
					delete(c.limiters, s)
				}
			}
		}
		l = rate.NewLimiter(r, burst)
		c.limiters[subject] = l
	}
	return l.Allow()
}

// acquire takes one of subject's max slots; release gives it back (once).
func (c *subjectCounter) acquire(subject string, max int) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	if c.counts[subject] >= max {
		return nil, false
	}
	c.counts[subject]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.counts[subject]--; c.counts[subject] <= 0 {
				delete(c.counts, subject)
			}
		})
	}, true
}
