package sharedctx

import (
	"context"
	"sync"
)

// UntilAllDone returns a context that is cancelled once every one of ctxs
// is done (or release is called), with the values of the first. release
// must be called when the shared work is over.
func UntilAllDone(ctxs ...context.Context) (ctx context.Context, release func()) {
	if len(ctxs) == 1 {
		return ctxs[0], func() {}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctxs[0]))
	var mu sync.Mutex
	live := len(ctxs)
	stops := make([]func() bool, 0, len(ctxs))
	for _, c := range ctxs {
		stops = append(stops, context.AfterFunc(c, func() {
			mu.Lock()
			defer mu.Unlock()
			if live--; live == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
