package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"tether.dev/tether/gateway/auth"
)

// readPublicKeys reads every PUBLIC KEY (PKIX) and CERTIFICATE block of a
// PEM file.
func readPublicKeys(path string) ([]crypto.PublicKey, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the path is the operator's setting
	if err != nil {
		return nil, fmt.Errorf("reading public keys: %w", err)
	}
	var keys []crypto.PublicKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		switch block.Type {
		case "PUBLIC KEY":
			key, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			keys = append(keys, key)
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			keys = append(keys, cert.PublicKey)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no PUBLIC KEY or CERTIFICATE block", path)
	}
	return keys, nil
}

// readHMACSecrets reads the HMAC secrets of a file, one per line: during a
// rotation it holds the new secret and the old one.
func readHMACSecrets(path string) ([][]byte, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the path is the operator's setting
	if err != nil {
		return nil, fmt.Errorf("reading the HMAC secrets: %w", err)
	}
	var secrets [][]byte
	for line := range strings.Lines(string(data)) {
		if line = strings.TrimSpace(line); line != "" {
			secrets = append(secrets, []byte(line))
		}
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%s holds no HMAC secret", path)
	}
	return secrets, nil
}

// keyFiles are the files that verify client tokens.
type keyFiles struct {
	hmac   string
	public []string
}

// load reads every key of the files.
func (f keyFiles) load() (hmacSecrets [][]byte, publicKeys []crypto.PublicKey, err error) {
	if f.hmac != "" {
		if hmacSecrets, err = readHMACSecrets(f.hmac); err != nil {
			return nil, nil, err
		}
	}
	for _, path := range f.public {
		keys, err := readPublicKeys(path)
		if err != nil {
			return nil, nil, err
		}
		publicKeys = append(publicKeys, keys...)
	}
	return hmacSecrets, publicKeys, nil
}

// watch reloads the keys into a whenever the files change from what last
// fingerprints (a Secret volume is updated in place by the kubelet),
// checking every period until ctx ends. Files that cannot be read, or hold
// no valid key, leave the keys in force as they were.
func (f keyFiles) watch(ctx context.Context, a *auth.Authenticator, last [sha256.Size]byte, period time.Duration, log logr.Logger) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := f.fingerprint()
		if now == last {
			continue
		}
		hmacSecrets, publicKeys, err := f.load()
		if err == nil {
			err = a.SetKeys(hmacSecrets, publicKeys)
		}
		if err != nil {
			log.Error(err, "the token keys changed but cannot be used; keeping the keys in force")
			continue
		}
		last = now
		log.Info("reloaded the token keys", "hmacSecrets", len(hmacSecrets), "publicKeys", len(publicKeys))
	}
}

// fingerprint hashes the files' contents.
func (f keyFiles) fingerprint() [sha256.Size]byte {
	h := sha256.New()
	for _, path := range append([]string{f.hmac}, f.public...) {
		if path == "" {
			continue
		}
		data, _ := os.ReadFile(path) //nolint:gosec // the path is the operator's setting
		h.Write(data)
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum
}
