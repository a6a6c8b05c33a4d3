package tlsfiles

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"tether.dev/tether/internal/testing/testcerts"
)

// TestFilesAreReloadedWhenTheyChange: a rotated pair and bundle are used
// once their files change; a broken change keeps the last good one; a
// broken file at start is an error.
func TestFilesAreReloadedWhenTheyChange(t *testing.T) {
	checkEvery = 0
	dir := t.TempDir()
	crt, key, bundle := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	if _, err := NewKeyPair(crt, key); err == nil {
		t.Fatal("a missing pair loaded")
	}
	if _, err := NewCAPool(bundle); err == nil {
		t.Fatal("a missing bundle loaded")
	}

	first, second := testcerts.NewCA(t, "first"), testcerts.NewCA(t, "second")
	first.WriteKeyPair(t, dir, "tether-runtime.team-a")
	first.WriteCA(t, bundle)
	pair, err := NewKeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := NewCAPool(bundle)
	if err != nil {
		t.Fatal(err)
	}
	verifies := func(ca *testcerts.CA) bool {
		t.Helper()
		cert, err := pair.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(ca.PEM)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "tether-runtime.team-a"})
		return err == nil
	}
	trusts := func(ca *testcerts.CA) bool {
		t.Helper()
		roots, err := pool.Pool()
		if err != nil {
			t.Fatal(err)
		}
		certPEM, _ := ca.Issue(t, "x")
		block, _ := pem.Decode(certPEM)
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "x"})
		return err == nil
	}
	if !verifies(first) || !trusts(first) || trusts(second) {
		t.Fatal("not the first CA's")
	}

	second.WriteKeyPair(t, dir, "tether-runtime.team-a")
	second.WriteCA(t, bundle)
	if !verifies(second) || !trusts(second) || trusts(first) {
		t.Fatal("the rotated files are not used")
	}

	if err := os.WriteFile(crt, []byte("half a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !verifies(second) || !trusts(second) {
		t.Fatal("a broken change replaced the pair or bundle in force")
	}
}
