package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	now    = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	secret = []byte("0123456789abcdef0123456789abcdef-gateway")
)

func claims(mutate ...func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
	c := jwt.RegisteredClaims{
		Subject: "alice", Audience: jwt.ClaimStrings{"tether"}, Issuer: "https://login.example",
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)),
	}
	for _, m := range mutate {
		m(&c)
	}
	return c
}

func sign(t *testing.T, method jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAuthenticate(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{
		HMACSecret: secret, PublicKeys: []crypto.PublicKey{&ecKey.PublicKey},
		Audience: "tether", Issuer: "https://login.example",
		AllowedOrigins: []string{"https://chat.example"}, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := func(c jwt.RegisteredClaims) string { return sign(t, jwt.SigningMethodHS256, secret, c) }
	bearer := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

	cases := []struct {
		name   string
		header http.Header
		reason Reason // empty: accepted
	}{
		{"valid HMAC token", bearer(hs(claims())), ""},
		{"valid ES256 token", bearer(sign(t, jwt.SigningMethodES256, ecKey, claims())), ""},
		{"token in the subprotocol, as browsers send it", http.Header{"Sec-Websocket-Protocol": {"tether.v1, " + TokenSubprotocolPrefix + hs(claims())}}, ""},
		{"allowed origin", http.Header{"Authorization": {"Bearer " + hs(claims())}, "Origin": {"https://chat.example"}}, ""},
		{"within the clock-skew leeway", bearer(hs(claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-10 * time.Second)) }))), ""},
		{"no token", http.Header{}, ReasonNoToken},
		{"not a JWT", bearer("hello"), ReasonMalformed},
		{"an oversized token", bearer(strings.Repeat("a", MaxTokenBytes+1)), ReasonMalformed},
		{"bad signature (another secret)", bearer(sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), claims())), ReasonBadSignature},
		{"bad signature (another key)", bearer(sign(t, jwt.SigningMethodES256, otherKey, claims())), ReasonBadSignature},
		{"alg none", bearer(sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims())), ReasonBadSignature},
		{"expired", bearer(hs(claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) }))), ReasonExpired},
		{"not valid yet", bearer(hs(claims(func(c *jwt.RegisteredClaims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) }))), ReasonNotYetValid},
		{"no expiry", bearer(hs(claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil }))), ReasonMalformed},
		{"valid for a century", bearer(hs(claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(now.AddDate(100, 0, 0)) }))), ReasonTooLong},
		{"valid for 25 hours, without iat", bearer(hs(claims(func(c *jwt.RegisteredClaims) {
			c.IssuedAt, c.ExpiresAt = nil, jwt.NewNumericDate(now.Add(25*time.Hour))
		}))), ReasonTooLong},
		{"issued long ago to look short-lived", bearer(hs(claims(func(c *jwt.RegisteredClaims) { c.IssuedAt = jwt.NewNumericDate(now.Add(-30 * 24 * time.Hour)) }))), ReasonTooLong},
		{"a 24 hour token", bearer(hs(claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(24*time.Hour - time.Minute)) }))), ""},
		{"wrong audience", bearer(hs(claims(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"billing"} }))), ReasonWrongAudience},
		{"wrong issuer", bearer(hs(claims(func(c *jwt.RegisteredClaims) { c.Issuer = "https://evil.example" }))), ReasonWrongIssuer},
		{"no subject", bearer(hs(claims(func(c *jwt.RegisteredClaims) { c.Subject = "" }))), ReasonNoSubject},
		{"forbidden origin", http.Header{"Authorization": {"Bearer " + hs(claims())}, "Origin": {"https://evil.example"}}, ReasonForbiddenOrigin},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.NewRequest(http.MethodGet, "http://gateway/v1/conversations/ns/c", nil)
			if err != nil {
				t.Fatal(err)
			}
			r.Header = tc.header
			id, err := a.Authenticate(r)
			if tc.reason == "" {
				if err != nil || id.Subject != "alice" {
					t.Fatalf("refused: %v (identity %+v)", err, id)
				}
				return
			}
			var aerr *Error
			if !errors.As(err, &aerr) || aerr.Reason != tc.reason {
				t.Fatalf("got %v, want reason %s", err, tc.reason)
			}
			if token := TokenFrom(r); len(token) > 8 && strings.Contains(aerr.Message, token) {
				t.Fatal("the refusal message contains the token")
			}
		})
	}
}

func TestConfigIsChecked(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no keys":                    {},
		"a short secret":             {HMACSecret: []byte("short")},
		"an origin with a path":      {HMACSecret: secret, AllowedOrigins: []string{"https://chat.example/app"}},
		"an origin without a scheme": {HMACSecret: secret, AllowedOrigins: []string{"chat.example"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAllowed(t *testing.T) {
	if !Allowed("alice", []string{"bob", "alice"}) || Allowed("mallory", []string{"alice"}) || Allowed("", []string{""}) {
		t.Error("subject check")
	}
}

// TestKeyRotationWithOverlap: several HMAC secrets are accepted at once,
// and keys replaced while serving take effect at once: a rotation adds the
// new secret, moves the issuer to it, then drops the old one.
func TestKeyRotationWithOverlap(t *testing.T) {
	oldSecret, newSecret := secret, []byte("a-new-secret-for-the-rotation-0123456789")
	a, err := New(Config{HMACSecret: oldSecret, Audience: "tether", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	signedWith := func(key []byte) string { return sign(t, jwt.SigningMethodHS256, key, claims()) }
	verify := func(token string) error { _, err := a.Verify(token); return err }
	if verify(signedWith(newSecret)) == nil {
		t.Fatal("a secret not yet in force was accepted")
	}
	if err := a.SetKeys([][]byte{oldSecret, newSecret}, nil); err != nil {
		t.Fatal(err)
	}
	if verify(signedWith(oldSecret)) != nil || verify(signedWith(newSecret)) != nil {
		t.Fatal("during the overlap, both secrets must verify")
	}
	if err := a.SetKeys([][]byte{newSecret}, nil); err != nil {
		t.Fatal(err)
	}
	if verify(signedWith(oldSecret)) == nil || verify(signedWith(newSecret)) != nil {
		t.Fatal("after the rotation, only the new secret may verify")
	}
	if a.SetKeys([][]byte{[]byte("short")}, nil) == nil || a.SetKeys(nil, nil) == nil {
		t.Fatal("a short secret, or no key at all, was accepted")
	}
	if verify(signedWith(newSecret)) != nil {
		t.Fatal("a refused SetKeys changed the keys in force")
	}
}
