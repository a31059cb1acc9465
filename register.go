package tlwebhook

import (
	"context"
	"fmt"
	"reflect"
)

// Registering callbacks: the generic On, the catch-all OnAny and one On
// method per row of the event table.

// On registers fn for the events of struct type E, replacing any earlier
// callback; nil removes it. It is the generic form of the On methods, for
// any event struct of [EventKinds]:
//
//	tlwebhook.On(h, func(ctx context.Context, ev *tlwebhook.JobCompleted) error { ... })
//
// On panics if *E is not one of the package's event structs.
func On[E any, P event[E]](h *Handler, fn func(context.Context, P) error) {
	i, ok := byRType[reflect.TypeFor[P]()]
	if !ok {
		panic(fmt.Sprintf("tlwebhook.On: %v is not an event struct of this package", reflect.TypeFor[P]()))
	}
	if fn == nil {
		h.callbacks[i].Store(nil)
		return
	}
	cb := callbackFunc(func(ctx context.Context, ev Event) error { return fn(ctx, ev.(P)) })
	h.callbacks[i].Store(&cb)
}

// OnAny registers fn for every event that has no callback of its own, for
// programs that forward every event (to a queue, say). A callback
// registered for an event's struct takes precedence: for one
// delivery exactly one callback runs. Replaces any earlier catch-all; nil
// removes it.
func (h *Handler) OnAny(fn func(context.Context, Event) error) {
	if fn == nil {
		h.any.Store(nil)
		return
	}
	cb := callbackFunc(fn)
	h.any.Store(&cb)
}

// OnJobCreated registers fn for [JobCreated] events, replacing any earlier
// callback; nil removes it.
func (h *Handler) OnJobCreated(fn func(context.Context, *JobCreated) error) { On(h, fn) }

// OnJobFailed registers fn for [JobFailed] events, replacing any earlier
// callback; nil removes it.
func (h *Handler) OnJobFailed(fn func(context.Context, *JobFailed) error) { On(h, fn) }

// OnJobCompleted registers fn for [JobCompleted] events, replacing any
// earlier callback; nil removes it.
func (h *Handler) OnJobCompleted(fn func(context.Context, *JobCompleted) error) { On(h, fn) }

// OnWorkflowCompleted registers fn for [WorkflowCompleted] events, replacing
// any earlier callback; nil removes it.
func (h *Handler) OnWorkflowCompleted(fn func(context.Context, *WorkflowCompleted) error) {
	On(h, fn)
}

// OnSandboxEvent registers fn for every [SandboxEvent] (all
// tensorlake.sandbox.* types, including ones added later), replacing any
// earlier callback; nil removes it.
func (h *Handler) OnSandboxEvent(fn func(context.Context, *SandboxEvent) error) { On(h, fn) }

// OnApplicationEvent registers fn for every [ApplicationEvent], replacing any
// earlier callback; nil removes it.
func (h *Handler) OnApplicationEvent(fn func(context.Context, *ApplicationEvent) error) {
	On(h, fn)
}

// OnRequestEvent registers fn for every [RequestEvent] (all
// tensorlake.application.request.* types), replacing any earlier callback;
// nil removes it.
func (h *Handler) OnRequestEvent(fn func(context.Context, *RequestEvent) error) { On(h, fn) }

// OnUnknown registers fn for [UnknownEvent]s: verified payloads that are none
// of the modelled events, and modelled events with breaking drift (their
// [UnknownEvent.Drift] says why), which without OnUnknown or [Handler.OnAny]
// are answered 500. Replaces any earlier callback; nil removes it.
func (h *Handler) OnUnknown(fn func(context.Context, *UnknownEvent) error) { On(h, fn) }
