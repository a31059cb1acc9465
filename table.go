package tlwebhook

import (
	"reflect"
	"slices"
	"strings"
)

// The event table: every modelled event kind is declared once, in kinds.
// Registration, dispatch, envelope access, [EventTypes], [EventKinds] (and
// through it the test samples, the CLI's event list and the demo) derive
// from it. Adding a typed event is: its struct (with Type and isEvent
// methods, or embedding its family's struct), one entry below, and one
// sample payload in tlwebhooktest/testdata/samples named after its type.
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
	// A typed event of a family: its struct embeds the family's struct (and
	// declares no Data field of its own, which would hide the family's), so
	// the family's callback keeps receiving it when it has no callback of
	// its own. For example:
	//	memberKind[SandboxSnapshotted](EventTypeSandboxSnapshotted),
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
	// Family is the Struct of the family a typed event belongs to, whose
	// callback receives it when it has none of its own; "" otherwise.
	Family string
}

// kind is one row of the event table.
type kind struct {
	EventKind
	rtype    reflect.Type // the struct's pointer type
	statuses []JobStatus  // job kinds: the status values that select it
	workflow bool         // the workflow payload
	parent   int          // index of Family in kinds, or -1
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
		EventKind: EventKind{Struct: t.Elem().Name(), Callback: callback, Types: types},
		rtype:     t,
		parent:    -1,
		newEvent:  func() Event { return P(new(E)) },
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

// memberKind declares a typed event of a lifecycle family. Its struct
// embeds the family's struct; the family is found by its prefix.
//
//lint:ignore U1000 used when a family member is added to the table.
func memberKind[E any, P event[E]](types ...EventType) kind {
	k := newKind[E, P]("", types)
	k.Family = "?"
	return k
}

func unknownKind() kind {
	return newKind[UnknownEvent]("OnUnknown", nil)
}

// byType, the special rows and the parents are computed once from the
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
	for i := range kinds {
		k := &kinds[i]
		if k.Family == "" {
			continue
		}
		f := familyOf(string(k.Types[0]))
		if f < 0 {
			panic("tlwebhook: " + k.Struct + " belongs to no family")
		}
		k.parent, k.Family = f, kinds[f].Struct
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
	if i, ok := byType[EventType(t)]; ok && (kinds[i].Prefix != "" || kinds[i].Family != "") {
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
