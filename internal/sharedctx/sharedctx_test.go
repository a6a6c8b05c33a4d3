package sharedctx_test

import (
	"context"
	"testing"

	"tether.dev/tether/internal/sharedctx"
)

type key struct{}

// TestUntilAllDone: the shared context outlives every caller but the last,
// carries the first one's values, and ends with release.
func TestUntilAllDone(t *testing.T) {
	a, cancelA := context.WithCancel(context.WithValue(context.Background(), key{}, "a"))
	b, cancelB := context.WithCancel(context.Background())
	c, cancelC := context.WithCancel(context.Background())
	ctx, release := sharedctx.UntilAllDone(a, b, c)
	defer release()
	if ctx.Value(key{}) != "a" {
		t.Error("the first caller's values are not carried")
	}
	cancelA()
	cancelC()
	if ctx.Err() != nil {
		t.Fatal("cancelled while a caller still waits")
	}
	cancelB()
	<-ctx.Done()

	d, cancelD := context.WithCancel(context.Background())
	defer cancelD()
	ctx, release = sharedctx.UntilAllDone(d, context.Background())
	release()
	if ctx.Err() == nil {
		t.Error("release did not end it")
	}
}
