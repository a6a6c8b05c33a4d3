package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// checkEvery is how often the files' metadata is looked at (a variable
// for tests).
var checkEvery = 5 * time.Second

// stamp identifies a version of a set of files.
type stamp string

func stampOf(paths ...string) (stamp, error) {
	var s stamp
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		// The kubelet updates a Secret volume by swapping a symlink: the
		// file is another inode then.
		var ino uint64
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		s += stamp(fmt.Sprintf("%s:%d:%d:%d;", p, ino, info.ModTime().UnixNano(), info.Size()))
	}
	return s, nil
}

// cached holds what was loaded from files, and reloads it when they change.
type cached[T any] struct {
	paths []string
	load  func() (T, error)

	mu      sync.Mutex
	value   T
	loaded  bool
	stamp   stamp
	checked time.Time
}

func (c *cached[T]) get() (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.loaded && now.Sub(c.checked) < checkEvery {
		return c.value, nil
	}
	c.checked = now
	s, err := stampOf(c.paths...)
	if err == nil && c.loaded && s == c.stamp {
		return c.value, nil
	}
	v, lerr := c.load()
	switch {
	case lerr == nil && err == nil:
		c.value, c.loaded, c.stamp = v, true, s
	case c.loaded:
		// A change caught half-written, or broken: keep what works.
	default:
		return v, errors.Join(err, lerr)
	}
	return c.value, nil
}

// KeyPair is a certificate and its key in PEM files.
type KeyPair struct{ c cached[*tls.Certificate] }

// NewKeyPair loads the pair once, so a broken pair fails at start.
func NewKeyPair(certFile, keyFile string) (*KeyPair, error) {
	k := &KeyPair{c: cached[*tls.Certificate]{paths: []string{certFile, keyFile}, load: func() (*tls.Certificate, error) {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tlsfiles: loading %s and %s: %w", certFile, keyFile, err)
		}
		return &pair, nil
	}}}
	if _, err := k.c.get(); err != nil {
		return nil, err
	}
	return k, nil
}

// GetCertificate is tls.Config's.
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return k.c.get() }

// CAPool is a bundle of PEM CA certificates in a file.
type CAPool struct{ c cached[*x509.CertPool] }

// NewCAPool loads the bundle once, so a broken bundle fails at start.
func NewCAPool(file string) (*CAPool, error) {
	p := &CAPool{c: cached[*x509.CertPool]{paths: []string{file}, load: func() (*x509.CertPool, error) {
		data, err := os.ReadFile(file) //nolint:gosec // the file the operator names
		if err != nil {
			return nil, fmt.Errorf("tlsfiles: reading %s: %w", file, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("tlsfiles: %s holds no PEM certificate", file)
		}
		return pool, nil
	}}}
	if _, err := p.c.get(); err != nil {
		return nil, err
	}
	return p, nil
}

// Pool is the bundle as it is now.
func (p *CAPool) Pool() (*x509.CertPool, error) { return p.c.get() }
