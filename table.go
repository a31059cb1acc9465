package tlwebhook

import (
	"context"
	"reflect"
	"slices"
	"strings"
)

// The event table: every modelled event kind is declared once, in kinds.
// Registration, dispatch, envelope access, [EventTypes], [EventKinds] (and
// through it the test samples, the CLI's event list and the demo) derive
// from it.
//
// A new event type of a family (tensorlake.sandbox.*, ...) already decodes
// as the family's struct and reaches its callback (reported as additive
// drift); modelling it is its EventType constant, one entry in its family's
// row below, and one sample payload in tlwebhooktest/testdata/samples named
// after its type. A new family is its struct (with Type and isEvent
// methods), a row, its On method (register.go), a sample per type, the
// README's event table and the test oracle's independent copy.
var kinds = []kind{
	jobKind[JobCreated]("OnJobCreated", EventTypeJobCreated, JobStatusPending),
	jobKind[JobFailed]("OnJobFailed", EventTypeJobFailed, JobStatusFailure),
	jobKind[JobCompleted]("OnJobCompleted", EventTypeJobCompleted, JobStatusSuccessful, JobStatusSuccess),
	workflowKind[WorkflowCompleted]("OnWorkflowCompleted", EventTypeWorkflowCompleted),
	familyKind[SandboxEvent]("OnSandboxEvent", "tensorlake.sandbox.",
		EventTypeSandboxCreated, EventTypeSandboxRunning, EventTypeSandboxSuspended,
		EventTypeSandboxResumed, EventTypeSandboxTerminated, EventTypeSandboxFailed),
	familyKind[ApplicationEvent]("OnApplicationEvent", "tensorlake.application.",
		EventTypeApplicationCreated, EventTypeApplicationUpdated, EventTypeApplicationDeleted),
	familyKind[RequestEvent]("OnRequestEvent", "tensorlake.application.request.",
		EventTypeRequestCreated, EventTypeRequestCompleted, EventTypeRequestFailed),
	unknownKind(),
}

// An EventKind describes one row of the library's event table: a Go
// struct, the wire event types it models and how a callback is registered
// for it. [EventKinds] lists them.
type EventKind struct {
	// Struct is the name of the event's struct, such as "SandboxEvent".
	Struct string
	// Callback is the Handler method that registers a callback for it, such
	// as "OnSandboxEvent", or "" when it is registered with [On] only.
	Callback string
	// Types are the wire event types it models, in a fixed order. Empty for
	// [UnknownEvent].
	Types []EventType
	// Prefix is set for a family: event types that start with it and are not
	// listed in Types decode as this kind too.
	Prefix string

	register func(h *Handler, fn func(context.Context, Event) error)
}

// Register registers fn as the callback of this kind's struct on h, as
// [On] would with a typed function, replacing any earlier callback: for
// programs that handle every kind of [EventKinds] alike. It panics for an
// EventKind that does not come from EventKinds.
func (k EventKind) Register(h *Handler, fn func(context.Context, Event) error) {
	if k.register == nil {
		panic("tlwebhook: EventKind.Register on a kind that is not from EventKinds")
	}
	k.register(h, fn)
}

// kind is one row of the event table.
type kind struct {
	EventKind
	rtype    reflect.Type // the struct's pointer type
	statuses []JobStatus  // job kinds: the status values that select it
	workflow bool         // the workflow payload
	newEvent func() Event
}

// event is the constraint of the table's generic constructors: a pointer to
// an event struct.
type event[E any] interface {
	*E
	Event
}

func newKind[E any, P event[E]](callback string, types []EventType) kind {
	t := reflect.TypeFor[P]()
	return kind{
		EventKind: EventKind{Struct: t.Elem().Name(), Callback: callback, Types: types,
			register: func(h *Handler, fn func(context.Context, Event) error) {
				On(h, func(ctx context.Context, ev P) error { return fn(ctx, ev) })
			}},
		rtype:    t,
		newEvent: func() Event { return P(new(E)) },
	}
}

func jobKind[E any, P event[E]](callback string, t EventType, statuses ...JobStatus) kind {
	k := newKind[E, P](callback, []EventType{t})
	k.statuses = statuses
	return k
}

func workflowKind[E any, P event[E]](callback string, t EventType) kind {
	k := newKind[E, P](callback, []EventType{t})
	k.workflow = true
	return k
}

func familyKind[E any, P event[E]](callback, prefix string, types ...EventType) kind {
	k := newKind[E, P](callback, types)
	k.Prefix = prefix
	return k
}

func unknownKind() kind {
	return newKind[UnknownEvent]("OnUnknown", nil)
}

// byType and the special rows are computed once from the
// table.
var (
	byType        = map[EventType]int{}
	byRType       = map[reflect.Type]int{}
	unknownIndex  int
	workflowIndex int
	eventTypes    []EventType
)

func init() {
	for i := range kinds {
		k := &kinds[i]
		byRType[k.rtype] = i
		if k.rtype == reflect.TypeFor[*UnknownEvent]() {
			unknownIndex = i
		}
		if k.workflow {
			workflowIndex = i
		}
		for _, t := range k.Types {
			if _, dup := byType[t]; dup {
				panic("tlwebhook: event type " + string(t) + " is in the event table twice")
			}
			byType[t] = i
			eventTypes = append(eventTypes, t)
		}
	}
}

// familyOf returns the index of the family whose prefix is the longest
// one that t starts with, or -1.
func familyOf(t string) int {
	best := -1
	for i := range kinds {
		p := kinds[i].Prefix
		if p != "" && strings.HasPrefix(t, p) && (best < 0 || len(p) > len(kinds[best].Prefix)) {
			best = i
		}
	}
	return best
}

// lifecycleKind returns the kind a lifecycle event_type decodes as: the
// row that lists it, else its family, else unknownIndex.
func lifecycleKind(t string) int {
	if i, ok := byType[EventType(t)]; ok && kinds[i].Prefix != "" {
		return i
	}
	if f := familyOf(t); f >= 0 {
		return f
	}
	return unknownIndex
}

// jobKindFor returns the job kind selected by a status, or -1.
func jobKindFor(status string) int {
	for i := range kinds {
		if slices.Contains(kinds[i].statuses, JobStatus(status)) {
			return i
		}
	}
	return -1
}

// EventTypes returns every event type this version of the library models,
// in the event table's order.
func EventTypes() []EventType { return slices.Clone(eventTypes) }

// EventKinds returns the rows of the library's event table: every event
// struct with the wire types it models and its registration method. The
// CLI's event list and the test samples are built from it.
func EventKinds() []EventKind {
	out := make([]EventKind, len(kinds))
	for i := range kinds {
		out[i] = kinds[i].EventKind
		out[i].Types = slices.Clone(out[i].Types)
	}
	return out
}
