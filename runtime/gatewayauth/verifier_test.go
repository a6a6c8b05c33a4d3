package gatewayauth_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"tether.dev/tether/internal/testing/testenv"
	"tether.dev/tether/runtime/gatewayauth"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

const identity = "system:serviceaccount:tether-system:tether-gateway"

// counting is the real API client, counting the TokenReviews it creates.
func counting(t *testing.T, reviews *atomic.Int64) client.Client {
	t.Helper()
	c, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return interceptor.NewClient(c, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*authenticationv1.TokenReview); ok {
				reviews.Add(1)
			}
			return c.Create(ctx, obj, opts...)
		},
	})
}

// TestOnlyTheGatewaysTokenPasses: real tokens of the cluster, reviewed by a
// real API server; only the gateway's ServiceAccount, for the runtime
// audience, passes.
func TestOnlyTheGatewaysTokenPasses(t *testing.T) {
	v, err := gatewayauth.New(gatewayauth.Config{Client: env.Client, Identity: identity})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"the gateway's, for the runtime audience", env.ServiceAccountToken(t, "tether-system", "tether-gateway", gatewayauth.DefaultAudience), nil},
		{"the gateway's, for the API server", env.ServiceAccountToken(t, "tether-system", "tether-gateway", "https://kubernetes.default.svc"), gatewayauth.ErrRefused},
		{"a tenant's runtime ServiceAccount", env.ServiceAccountToken(t, "team-a", "tether-runtime", gatewayauth.DefaultAudience), gatewayauth.ErrRefused},
		{"a look-alike in a tenant namespace", env.ServiceAccountToken(t, "team-a", "tether-gateway", gatewayauth.DefaultAudience), gatewayauth.ErrRefused},
		{"not a token", "hello", gatewayauth.ErrRefused},
		{"empty", "", gatewayauth.ErrRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := v.Verify(ctx, tc.token); !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReviewsAreCachedAndBounded: a token is reviewed once per TTL however
// many sockets present it; a refusal is remembered too; a flood of made-up
// tokens gets at most the burst of reviews, then ErrBusy, and the cache
// stays within its bound.
func TestReviewsAreCachedAndBounded(t *testing.T) {
	var reviews atomic.Int64
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	v, err := gatewayauth.New(gatewayauth.Config{Client: counting(t, &reviews), Identity: identity,
		ReviewRate: 0.001, ReviewBurst: 5, MaxEntries: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good := env.ServiceAccountToken(t, "tether-system", "tether-gateway", gatewayauth.DefaultAudience)
	for range 100 {
		if err := v.Verify(ctx, good); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		if err := v.Verify(ctx, "made-up"); !errors.Is(err, gatewayauth.ErrRefused) {
			t.Fatal(err)
		}
	}
	if n := reviews.Load(); n != 2 {
		t.Fatalf("%d reviews for 100 uses of one token and 10 of another, want 2", n)
	}
	busy := 0
	for i := range 50 {
		if err := v.Verify(ctx, "flood-"+string(rune('a'+i))); errors.Is(err, gatewayauth.ErrBusy) {
			busy++
		}
	}
	if n := reviews.Load(); n != 5 || busy != 47 {
		t.Fatalf("%d reviews and %d busy answers for a flood of 50 tokens, want 5 (the burst) and 47", n, busy)
	}
	if n := v.Len(); n > 3 {
		t.Fatalf("%d cached entries, want at most 3", n)
	}
	// After the TTL, the gateway's token is reviewed again (a revoked one
	// stops working within a minute).
	now = now.Add(61 * time.Second)
	v2, _ := gatewayauth.New(gatewayauth.Config{Client: counting(t, &reviews), Identity: identity, Now: func() time.Time { return now }})
	before := reviews.Load()
	_ = v2.Verify(ctx, good)
	now = now.Add(61 * time.Second)
	_ = v2.Verify(ctx, good)
	if n := reviews.Load() - before; n != 2 {
		t.Fatalf("%d reviews across two TTLs, want 2", n)
	}
}
