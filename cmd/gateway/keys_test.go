package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/golang-jwt/jwt/v5"

	"tether.dev/tether/gateway/auth"
	"tether.dev/tether/internal/testing/await"
)

// TestKeysAreReloadedWhenTheSecretChanges: the gateway reads its HMAC
// secrets file again when the kubelet updates the Secret, so a rotation
// (add the new secret, move the issuer, drop the old) needs no restart; a
// file that breaks keeps the keys in force.
func TestKeysAreReloadedWhenTheSecretChanges(t *testing.T) {
	oldSecret, newSecret := "old-secret-0123456789abcdef0123456789", "new-secret-0123456789abcdef0123456789"
	path := filepath.Join(t.TempDir(), "hmac-secret")
	write := func(content string) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(oldSecret + "\n")
	files := keyFiles{hmac: path}
	loaded := files.fingerprint()
	secrets, public, err := files.load()
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{HMACSecrets: secrets, PublicKeys: public})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go files.watch(ctx, a, loaded, 5*time.Millisecond, logr.Discard())

	accepts := func(secret string) bool {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Verify(tok)
		return err == nil
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		await.Until(t, 5*time.Second, what, cond)
	}
	if !accepts(oldSecret) || accepts(newSecret) {
		t.Fatal("before the rotation: only the old secret")
	}
	write(oldSecret + "\n" + newSecret + "\n")
	eventually("both secrets accepted", func() bool { return accepts(oldSecret) && accepts(newSecret) })
	write("short\n")
	// Ten reload periods: a broken file must change nothing.
	await.Stays(t, 50*time.Millisecond, "both secrets accepted after a broken file", func() bool { return accepts(oldSecret) && accepts(newSecret) })
	write(newSecret + "\n")
	eventually("the old secret dropped", func() bool { return !accepts(oldSecret) && accepts(newSecret) })
}
