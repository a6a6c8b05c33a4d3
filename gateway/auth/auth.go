// Package auth authenticates the clients of the gateway: a JWT verified with
// a well-kept library (HMAC or public keys), its expiry, audience and issuer
// checked, and the request's Origin checked against an allow-list against
// cross-site WebSocket hijacking. Tokens are never logged.
//
// Browsers cannot set headers on a WebSocket, so besides
// "Authorization: Bearer TOKEN" a client may send the token as a second
// WebSocket subprotocol, "tether.token.TOKEN", next to "tether.v1"; the
// gateway accepts only "tether.v1", so the token is never echoed back.
package auth

import (
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenSubprotocolPrefix marks the subprotocol that carries a browser's
// token.
const TokenSubprotocolPrefix = "tether.token."

// MaxTokenBytes bounds a token; longer ones are refused unread.
const MaxTokenBytes = 8 << 10

// Reason says why a request was refused, from a fixed set (metric labels).
type Reason string

// Refusal reasons.
const (
	ReasonNoToken         Reason = "no_token"
	ReasonMalformed       Reason = "malformed"
	ReasonBadSignature    Reason = "bad_signature"
	ReasonExpired         Reason = "expired"
	ReasonNotYetValid     Reason = "not_yet_valid"
	ReasonWrongAudience   Reason = "wrong_audience"
	ReasonWrongIssuer     Reason = "wrong_issuer"
	ReasonNoSubject       Reason = "no_subject"
	ReasonForbiddenOrigin Reason = "forbidden_origin"
	ReasonTooLong         Reason = "lifetime_too_long"
)

// Error is a refused request: the reason (for metrics and the close or HTTP
// status) and a message safe to show (it never contains the token).
type Error struct {
	Reason  Reason
	Message string
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Message }

func refuse(reason Reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Config says which tokens and origins the gateway accepts.
type Config struct {
	// HMACSecret verifies HS256/384/512 tokens.
	HMACSecret []byte
	// HMACSecrets are more HMAC secrets, all accepted at once: a rotation
	// adds the new secret, moves issuers to it, then drops the old.
	HMACSecrets [][]byte
	// PublicKeys verify RS*, PS*, ES* and EdDSA tokens.
	PublicKeys []crypto.PublicKey
	// MaxTokenLifetime bounds exp - iat (exp - now for a token without
	// iat) [24h]: a token valid for a century is refused, whatever signed
	// it.
	MaxTokenLifetime time.Duration
	// Audience, when set, must be among the token's aud claims.
	Audience string
	// Issuer, when set, must be the token's iss claim.
	Issuer string
	// Leeway absorbs clock skew in exp and nbf (30 s by default).
	Leeway time.Duration
	// AllowedOrigins are the Origins (scheme://host[:port]) a browser may
	// connect from; "*" allows any. Requests without an Origin (programs,
	// not browsers) are allowed.
	AllowedOrigins []string
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Authenticator verifies requests. Its keys can be replaced while it
// serves (SetKeys), so a Secret's new keys take effect without a restart.
type Authenticator struct {
	cfg  Config
	keys atomic.Pointer[keySet]
}

// keySet is the keys in force and the parser that accepts their methods.
type keySet struct {
	hmac   [][]byte
	public []crypto.PublicKey
	parser *jwt.Parser
}

// New checks cfg and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	for _, o := range cfg.AllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" {
			return nil, fmt.Errorf("auth: allowed origin %q is not scheme://host[:port]", o)
		}
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.MaxTokenLifetime == 0 {
		cfg.MaxTokenLifetime = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Authenticator{cfg: cfg}
	secrets := cfg.HMACSecrets
	if len(cfg.HMACSecret) > 0 {
		secrets = append([][]byte{cfg.HMACSecret}, secrets...)
	}
	if err := a.SetKeys(secrets, cfg.PublicKeys); err != nil {
		return nil, err
	}
	return a, nil
}

// SetKeys replaces the keys that verify tokens: every HMAC secret and
// public key given is accepted, and no other. Sockets already open keep
// running until their tokens expire.
func (a *Authenticator) SetKeys(hmacSecrets [][]byte, publicKeys []crypto.PublicKey) error {
	if len(hmacSecrets) == 0 && len(publicKeys) == 0 {
		return errors.New("auth: no HMAC secret and no public key: every token would be refused")
	}
	for _, s := range hmacSecrets {
		if len(s) < 32 {
			return errors.New("auth: an HMAC secret must be at least 32 bytes")
		}
	}
	var methods []string
	if len(hmacSecrets) > 0 {
		methods = append(methods, "HS256", "HS384", "HS512")
	}
	if len(publicKeys) > 0 {
		methods = append(methods, "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods), jwt.WithLeeway(a.cfg.Leeway), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(a.cfg.Now),
	}
	if a.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.cfg.Audience))
	}
	if a.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.cfg.Issuer))
	}
	a.keys.Store(&keySet{hmac: hmacSecrets, public: publicKeys, parser: jwt.NewParser(opts...)})
	return nil
}

// Identity is who a verified token says the client is.
type Identity struct {
	Subject string
	Expiry  time.Time
}

// Authenticate checks the request's Origin and token and returns the
// token's identity.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	if err := a.checkOrigin(r.Header.Get("Origin")); err != nil {
		return Identity{}, err
	}
	raw := TokenFrom(r)
	if raw == "" {
		return Identity{}, refuse(ReasonNoToken, "no token: send Authorization: Bearer TOKEN, or the subprotocol %sTOKEN", TokenSubprotocolPrefix)
	}
	if len(raw) > MaxTokenBytes {
		return Identity{}, refuse(ReasonMalformed, "the token is over %d bytes", MaxTokenBytes)
	}
	return a.Verify(raw)
}

// Verify checks a raw token.
func (a *Authenticator) Verify(raw string) (Identity, error) {
	ks := a.keys.Load()
	token, err := ks.parser.ParseWithClaims(raw, &jwt.RegisteredClaims{}, ks.key)
	if err != nil {
		return Identity{}, classify(err)
	}
	claims := token.Claims.(*jwt.RegisteredClaims)
	if claims.Subject == "" {
		return Identity{}, refuse(ReasonNoSubject, "the token has no subject (sub)")
	}
	issued := a.cfg.Now()
	if claims.IssuedAt != nil {
		issued = claims.IssuedAt.Time
	}
	if lifetime := claims.ExpiresAt.Sub(issued); lifetime > a.cfg.MaxTokenLifetime+a.cfg.Leeway {
		return Identity{}, refuse(ReasonTooLong, "the token's lifetime (exp - iat) is %s; the maximum is %s", lifetime.Round(time.Second), a.cfg.MaxTokenLifetime)
	}
	return Identity{Subject: claims.Subject, Expiry: claims.ExpiresAt.Time}, nil
}

// key picks the verification keys for the token's algorithm family: every
// key in force of that family is tried. The kid header, when present, is
// not trusted to pick among them.
func (ks *keySet) key(t *jwt.Token) (any, error) {
	var keys []jwt.VerificationKey
	if _, ok := t.Method.(*jwt.SigningMethodHMAC); ok {
		for _, s := range ks.hmac {
			keys = append(keys, s)
		}
	} else {
		for _, k := range ks.public {
			keys = append(keys, k)
		}
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// classify maps the library's errors to refusal reasons.
func classify(err error) *Error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse(ReasonExpired, "the token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse(ReasonNotYetValid, "the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse(ReasonWrongAudience, "the token is for another audience")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse(ReasonWrongIssuer, "the token is from another issuer")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse(ReasonBadSignature, "the token's signature does not verify")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse(ReasonMalformed, "the token lacks a required claim (exp)")
	}
	return refuse(ReasonMalformed, "the token is not a valid JWT")
}

// checkOrigin refuses a browser connecting from an Origin not allowed.
func (a *Authenticator) checkOrigin(origin string) error {
	if origin == "" || slices.Contains(a.cfg.AllowedOrigins, "*") {
		return nil
	}
	for _, allowed := range a.cfg.AllowedOrigins {
		if strings.EqualFold(origin, allowed) {
			return nil
		}
	}
	return refuse(ReasonForbiddenOrigin, "connections from origin %.100q are not allowed", origin)
}

// TokenFrom returns the request's token: the Authorization header's bearer
// token, else a tether.token.* subprotocol's.
func TokenFrom(r *http.Request) string {
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(bearer)
	}
	for _, header := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(header, ",") {
			if token, ok := strings.CutPrefix(strings.TrimSpace(p), TokenSubprotocolPrefix); ok {
				return token
			}
		}
	}
	return ""
}

// Allowed reports whether subject may use a conversation that allows
// subjects.
func Allowed(subject string, subjects []string) bool {
	return subject != "" && slices.Contains(subjects, subject)
}
