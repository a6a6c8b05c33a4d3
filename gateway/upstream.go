package gateway

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// TokenSource yields the token the gateway presents to runtimes: a token of
// the gateway's ServiceAccount for the runtime audience, which the runtime
// checks with a TokenReview.
type TokenSource func() (string, error)

// StaticToken always presents token.
func StaticToken(token string) TokenSource {
	return func() (string, error) { return token, nil }
}

// FileToken presents the token in path, read again once a minute: the
// kubelet rewrites a projected ServiceAccount token well before it expires.
func FileToken(path string) TokenSource {
	var (
		mu     sync.Mutex
		token  string
		readAt time.Time
	)
	return func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if token != "" && time.Since(readAt) < time.Minute {
			return token, nil
		}
		data, err := os.ReadFile(path) //nolint:gosec // the path is the operator's setting
		if err != nil {
			if token != "" {
				return token, nil // keep the last one until the file is back
			}
			return "", fmt.Errorf("reading the upstream token: %w", err)
		}
		t := strings.TrimSpace(string(data))
		if t == "" {
			return "", errors.New("the upstream token file is empty")
		}
		token, readAt = t, time.Now()
		return token, nil
	}
}
