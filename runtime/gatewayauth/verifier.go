package gatewayauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
	authenticationv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DefaultAudience is the audience of the tokens the gateway presents.
const DefaultAudience = "tether-runtime"

// ErrRefused is returned for a token that is not the gateway's.
var ErrRefused = errors.New("not the gateway's token")

// ErrBusy is returned when too many unknown tokens arrive at once to be
// reviewed; the caller answers 503 and the gateway retries.
var ErrBusy = errors.New("too many token reviews at once")

// Config configures a Verifier. Zero values take the defaults in brackets.
type Config struct {
	// Client creates TokenReviews.
	Client client.Client
	// Identity is the user name the gateway's tokens must authenticate as,
	// system:serviceaccount:NAMESPACE:NAME. Required.
	Identity string
	// Audience the tokens must be valid for [tether-runtime].
	Audience string
	// TTL is how long a review's answer is reused [1m]; Refusals are
	// remembered for RefusalTTL [10s].
	TTL, RefusalTTL time.Duration
	// ReviewRate and ReviewBurst bound reviews of tokens not in the cache
	// [5/s, burst 20].
	ReviewRate  rate.Limit
	ReviewBurst int
	// MaxEntries bounds the cache [1024].
	MaxEntries int
	// Now is the clock [time.Now].
	Now func() time.Time
}

// Verifier checks bearer tokens with TokenReviews.
type Verifier struct {
	cfg     Config
	limiter *rate.Limiter

	mu      sync.Mutex
	entries map[[sha256.Size]byte]entry
}

type entry struct {
	ok    bool
	until time.Time
}

// New returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.Client == nil || cfg.Identity == "" {
		return nil, errors.New("gatewayauth: a client and the gateway's identity are required")
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	if cfg.TTL == 0 {
		cfg.TTL = time.Minute
	}
	if cfg.RefusalTTL == 0 {
		cfg.RefusalTTL = 10 * time.Second
	}
	if cfg.ReviewRate == 0 {
		cfg.ReviewRate, cfg.ReviewBurst = 5, 20
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{cfg: cfg, limiter: rate.NewLimiter(cfg.ReviewRate, cfg.ReviewBurst),
		entries: map[[sha256.Size]byte]entry{}}, nil
}

// Verify returns nil when token is a valid token of the gateway's identity
// for the audience; ErrRefused when it is not; ErrBusy, or the API error,
// when it cannot tell now.
func (v *Verifier) Verify(ctx context.Context, token string) error {
	if token == "" {
		return ErrRefused
	}
	key := sha256.Sum256([]byte(token))
	now := v.cfg.Now()
	v.mu.Lock()
	e, cached := v.entries[key]
	v.mu.Unlock()
	if cached && now.Before(e.until) {
		return verdict(e.ok)
	}
	if !v.limiter.Allow() {
		return ErrBusy
	}
	ok, err := v.review(ctx, token)
	if err != nil {
		return err
	}
	ttl := v.cfg.TTL
	if !ok {
		ttl = v.cfg.RefusalTTL
	}
	v.remember(key, entry{ok: ok, until: now.Add(ttl)}, now)
	return verdict(ok)
}

func verdict(ok bool) error {
	if ok {
		return nil
	}
	return ErrRefused
}

func (v *Verifier) review(ctx context.Context, token string) (bool, error) {
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{v.cfg.Audience}}}
	if err := v.cfg.Client.Create(ctx, review); err != nil {
		return false, fmt.Errorf("reviewing the gateway's token: %w", err)
	}
	st := review.Status
	return st.Authenticated && st.Error == "" && st.User.Username == v.cfg.Identity &&
		slices.Contains(st.Audiences, v.cfg.Audience), nil
}

// remember stores e, first dropping expired entries, and any entry at all
// when the cache is full (a flood of distinct tokens must not grow it).
func (v *Verifier) remember(key [sha256.Size]byte, e entry, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.entries) >= v.cfg.MaxEntries {
		for k, old := range v.entries {
			if !now.Before(old.until) || len(v.entries) >= v.cfg.MaxEntries {
				delete(v.entries, k)
			}
		}
	}
	v.entries[key] = e
}

// Len is how many answers the cache holds.
func (v *Verifier) Len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.entries)
}
