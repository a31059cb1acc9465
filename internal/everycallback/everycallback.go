// Package everycallback registers one function for every callback slot of a
// tlwebhook.Handler, derived from the library's event table, so that the
// tests, benchmarks and CLI that need "a callback for everything" share one
// block instead of writing the list out.
package everycallback

import (
	"context"
	"fmt"
	"reflect"

	"github.com/tlwebhook/tlwebhook"
)

// Register registers, for every row of [tlwebhook.EventKinds] that has an
// On method, a callback that calls fn with the method's name and the event.
// Typed events without a method of their own reach their family's.
func Register(h *tlwebhook.Handler, fn func(ctx context.Context, callback string, ev tlwebhook.Event) error) {
	hv := reflect.ValueOf(h)
	ctxType := reflect.TypeFor[context.Context]()
	for _, k := range tlwebhook.EventKinds() {
		if k.Callback == "" {
			continue
		}
		m := hv.MethodByName(k.Callback)
		if !m.IsValid() {
			panic(fmt.Sprintf("everycallback: the event table names %s.%s, which does not exist", "Handler", k.Callback))
		}
		fnType := m.Type().In(0) // func(context.Context, *T) error
		name := k.Callback
		cb := reflect.MakeFunc(fnType, func(args []reflect.Value) []reflect.Value {
			ctx := args[0].Interface().(context.Context)
			err := fn(ctx, name, args[1].Interface().(tlwebhook.Event))
			errv := reflect.New(fnType.Out(0)).Elem()
			if err != nil {
				errv.Set(reflect.ValueOf(err))
			}
			return []reflect.Value{errv}
		})
		if fnType.In(0) != ctxType {
			panic("everycallback: unexpected callback signature " + fnType.String())
		}
		m.Call([]reflect.Value{cb})
	}
}
