// Package everycallback registers one function for every callback slot of a
// tlwebhook.Handler, derived from the library's event table, so that the
// tests, benchmarks and CLI that need "a callback for everything" share one
// block instead of writing the list out.
package everycallback

import (
	"context"

	"github.com/tlwebhook/tlwebhook"
)

// Register registers, for every row of [tlwebhook.EventKinds], a callback
// that calls fn with the row's On method name (or the struct's name for a
// row registered with tlwebhook.On only) and the event.
func Register(h *tlwebhook.Handler, fn func(ctx context.Context, callback string, ev tlwebhook.Event) error) {
	for _, k := range tlwebhook.EventKinds() {
		name := k.Callback
		if name == "" {
			name = k.Struct
		}
		k.Register(h, func(ctx context.Context, ev tlwebhook.Event) error { return fn(ctx, name, ev) })
	}
}
