package tlwebhook

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// Envelope holds the fields every lifecycle event carries. It is embedded in
// [SandboxEvent], [ApplicationEvent], [RequestEvent] and [UnknownEvent], so
// its fields are promoted.
type Envelope struct {
	// EventID is stable across retries of one event: Tensorlake's
	// recommended deduplication key. See [Delivery.IdempotencyKey].
	EventID string `json:"event_id"`
	// EventType is the event's type, for example
	// [EventTypeSandboxFailed].
	EventType EventType `json:"event_type"`
	// EventVersion is the schema version of the event; currently 1.
	EventVersion int `json:"event_version"`
	// OccurredAt is when the event happened.
	OccurredAt time.Time `json:"occurred_at"`
	ProjectID  string    `json:"project_id"`
	// SourceID names the ordering domain: events with the same SourceID
	// are ordered by SourceRevision, then SourceOrdinal. See
	// [Envelope.Compare].
	SourceID string `json:"source_id"`
	// SourceRevision is an unsigned decimal that can exceed 64 bits, kept
	// exactly as sent.
	SourceRevision Revision `json:"source_revision"`
	// SourceOrdinal is the zero-based order of the event within one source
	// revision.
	SourceOrdinal int64 `json:"source_ordinal"`
}

// Type returns the envelope's event type.
func (e *Envelope) Type() EventType { return e.EventType }

// Compare orders two events of the same source (equal SourceID): it returns
// -1 if e happened before o, +1 if after, and 0 if they are the same
// position. It compares SourceRevision numerically, then SourceOrdinal. The
// result is meaningless for events of different sources.
//
// Deliveries are not ordered. To drop stale updates, keep the envelope of
// the last event applied per SourceID and ignore an event that does not
// compare greater:
//
//	if last, ok := seen[ev.SourceID]; ok && ev.Compare(&last) <= 0 {
//		return nil // stale or duplicate: already applied something newer
//	}
//	seen[ev.SourceID] = ev.Envelope
func (e *Envelope) Compare(o *Envelope) int {
	if c := e.SourceRevision.Compare(o.SourceRevision); c != 0 {
		return c
	}
	switch {
	case e.SourceOrdinal < o.SourceOrdinal:
		return -1
	case e.SourceOrdinal > o.SourceOrdinal:
		return 1
	}
	return 0
}

// Revision is an unsigned decimal integer of any length, kept as the exact
// string sent. Compare it with [Revision.Compare], never as strings.
type Revision string

// Valid reports whether r is a non-empty string of decimal digits.
func (r Revision) Valid() bool {
	if r == "" {
		return false
	}
	for i := 0; i < len(r); i++ {
		if r[i] < '0' || r[i] > '9' {
			return false
		}
	}
	return true
}

// Compare compares r and o as numbers: -1 if r < o, 0 if equal, +1 if
// r > o. Leading zeros do not matter. Invalid revisions (see
// [Revision.Valid]) order before all valid ones, and among themselves as
// strings.
func (r Revision) Compare(o Revision) int {
	rv, ov := r.Valid(), o.Valid()
	switch {
	case !rv && !ov:
		return strings.Compare(string(r), string(o))
	case !rv:
		return -1
	case !ov:
		return 1
	}
	a := strings.TrimLeft(string(r), "0")
	b := strings.TrimLeft(string(o), "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// UnmarshalJSON accepts a JSON string (the wire form) or a JSON integer.
func (r *Revision) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		s, err := jsontext.AppendUnquote(nil, b)
		if err != nil {
			return fmt.Errorf("source_revision: %w", err)
		}
		*r = Revision(s)
		return nil
	}
	n := Revision(b)
	if !n.Valid() {
		return errRevision
	}
	*r = n
	return nil
}

var errRevision = errors.New("source_revision: not a string or an unsigned integer")

// SandboxEvent is a sandbox lifecycle event: one of the
// tensorlake.sandbox.* types.
type SandboxEvent struct {
	Envelope
	Data SandboxEventData `json:"data"`
}

func (*SandboxEvent) isEvent() {}

// SandboxEventData is the data of a [SandboxEvent].
type SandboxEventData struct {
	// PreviousStatus is the sandbox's status before this event, or nil.
	PreviousStatus *SandboxStatus `json:"previous_status"`
	Sandbox        Sandbox        `json:"sandbox"`
}

// Sandbox describes a sandbox as of a [SandboxEvent].
type Sandbox struct {
	ID   string      `json:"id"`
	Name *string     `json:"name"`
	Type SandboxType `json:"type"`
	// Image is the sandbox's image, or nil.
	Image *string `json:"image"`
	// GenerationID starts at 1 and grows each time the sandbox resumes.
	GenerationID  int64                 `json:"generation_id"`
	Status        SandboxStatus         `json:"status"`
	Outcome       *SandboxOutcome       `json:"outcome"`
	OutcomeReason *SandboxOutcomeReason `json:"outcome_reason"`
	SnapshotID    *string               `json:"snapshot_id"`
	CreatedAt     time.Time             `json:"created_at"`
	Resources     Resources             `json:"resources"`
}

// Resources are the resources allocated to a sandbox.
type Resources struct {
	CPUs     float64 `json:"cpus"`
	MemoryMB int64   `json:"memory_mb"`
	DiskMB   int64   `json:"disk_mb"`
	GPUCount int64   `json:"gpu_count"`
	GPUModel *string `json:"gpu_model"`
}

// SandboxType is the kind of a sandbox.
type SandboxType string

// Sandbox types.
const (
	SandboxTypeNamed     SandboxType = "named"
	SandboxTypeEphemeral SandboxType = "ephemeral"
)

// SandboxStatus is the status of a sandbox.
type SandboxStatus string

// Sandbox statuses.
const (
	SandboxStatusPending    SandboxStatus = "pending"
	SandboxStatusRunning    SandboxStatus = "running"
	SandboxStatusSuspended  SandboxStatus = "suspended"
	SandboxStatusTerminated SandboxStatus = "terminated"
)

// SandboxOutcome is how a sandbox ended.
type SandboxOutcome string

// Sandbox outcomes.
const (
	SandboxOutcomeSuccess SandboxOutcome = "success"
	SandboxOutcomeFailure SandboxOutcome = "failure"
)

// SandboxOutcomeReason says why a sandbox ended. Values not listed here may appear.
type SandboxOutcomeReason string

// Sandbox outcome reasons.
const (
	SandboxOutcomeReasonUnknown                 SandboxOutcomeReason = "unknown"
	SandboxOutcomeReasonUserTerminated          SandboxOutcomeReason = "user_terminated"
	SandboxOutcomeReasonTimeout                 SandboxOutcomeReason = "timeout"
	SandboxOutcomeReasonInternalError           SandboxOutcomeReason = "internal_error"
	SandboxOutcomeReasonConstraintUnsatisfiable SandboxOutcomeReason = "constraint_unsatisfiable"
	SandboxOutcomeReasonExecutorRemoved         SandboxOutcomeReason = "executor_removed"
	SandboxOutcomeReasonOutOfMemory             SandboxOutcomeReason = "out_of_memory"
	SandboxOutcomeReasonContainerStartupFailed  SandboxOutcomeReason = "container_startup_failed"
	SandboxOutcomeReasonPoolDeleted             SandboxOutcomeReason = "pool_deleted"
	SandboxOutcomeReasonContainerTerminated     SandboxOutcomeReason = "container_terminated"
	SandboxOutcomeReasonBadImage                SandboxOutcomeReason = "bad_image"
	SandboxOutcomeReasonImageNotFound           SandboxOutcomeReason = "image_not_found"
	SandboxOutcomeReasonContainerUnhealthy      SandboxOutcomeReason = "container_unhealthy"
	SandboxOutcomeReasonFunctionError           SandboxOutcomeReason = "function_error"
	SandboxOutcomeReasonFunctionTimeout         SandboxOutcomeReason = "function_timeout"
	SandboxOutcomeReasonFunctionCancelled       SandboxOutcomeReason = "function_cancelled"
	SandboxOutcomeReasonDesiredStateRemoved     SandboxOutcomeReason = "desired_state_removed"
	SandboxOutcomeReasonProcessCrash            SandboxOutcomeReason = "process_crash"
	SandboxOutcomeReasonExecutorDrained         SandboxOutcomeReason = "executor_drained"
)

// ApplicationEvent is an application lifecycle event:
// tensorlake.application.created, updated or deleted (and future
// tensorlake.application.* types outside the request family).
type ApplicationEvent struct {
	Envelope
	Data ApplicationEventData `json:"data"`
}

func (*ApplicationEvent) isEvent() {}

// ApplicationEventData is the data of an [ApplicationEvent].
type ApplicationEventData struct {
	// PreviousVersion is the application's version before this event, or
	// nil.
	PreviousVersion *string `json:"previous_version"`
	// PreviousState is the application's state before this event, or nil.
	PreviousState *ApplicationState `json:"previous_state"`
	Application   Application       `json:"application"`
}

// Application describes an application as of an [ApplicationEvent].
type Application struct {
	Name           string           `json:"name"`
	Version        string           `json:"version"`
	State          ApplicationState `json:"state"`
	DisabledReason *string          `json:"disabled_reason"`
	CreatedAt      time.Time        `json:"created_at"`
}

// ApplicationState is the state of an application.
type ApplicationState string

// Application states.
const (
	ApplicationStateActive   ApplicationState = "active"
	ApplicationStateDisabled ApplicationState = "disabled"
)

// RequestEvent is an application-request lifecycle event: one of the
// tensorlake.application.request.* types.
type RequestEvent struct {
	Envelope
	Data RequestEventData `json:"data"`
}

func (*RequestEvent) isEvent() {}

// RequestEventData is the data of a [RequestEvent].
type RequestEventData struct {
	Application ApplicationRef     `json:"application"`
	Request     ApplicationRequest `json:"request"`
}

// ApplicationRef identifies the application a request was made to.
type ApplicationRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// ApplicationRequest describes an application request as of a [RequestEvent].
type ApplicationRequest struct {
	ID            string         `json:"id"`
	Status        RequestStatus  `json:"status"`
	FailureReason *FailureReason `json:"failure_reason"`
	CreatedAt     time.Time      `json:"created_at"`
	// FinishedAt is nil while the request runs.
	FinishedAt *time.Time `json:"finished_at"`
}

// RequestStatus is the status of an application request.
type RequestStatus string

// Request statuses.
const (
	RequestStatusCreated   RequestStatus = "created"
	RequestStatusCompleted RequestStatus = "completed"
	RequestStatusFailed    RequestStatus = "failed"
)

// FailureReason says why an application request failed. Values not listed
// here may appear.
type FailureReason string

// Request failure reasons.
const (
	FailureReasonUnknown                 FailureReason = "unknown"
	FailureReasonInternalError           FailureReason = "internal_error"
	FailureReasonFunctionError           FailureReason = "function_error"
	FailureReasonFunctionTimeout         FailureReason = "function_timeout"
	FailureReasonRequestError            FailureReason = "request_error"
	FailureReasonConstraintUnsatisfiable FailureReason = "constraint_unsatisfiable"
	FailureReasonCancelled               FailureReason = "cancelled"
	FailureReasonOutOfMemory             FailureReason = "out_of_memory"
)

// Event types of the lifecycle events, which carry their type in the
// envelope's event_type field.
const (
	EventTypeSandboxCreated    EventType = "tensorlake.sandbox.created"
	EventTypeSandboxRunning    EventType = "tensorlake.sandbox.running"
	EventTypeSandboxSuspended  EventType = "tensorlake.sandbox.suspended"
	EventTypeSandboxResumed    EventType = "tensorlake.sandbox.resumed"
	EventTypeSandboxTerminated EventType = "tensorlake.sandbox.terminated"
	EventTypeSandboxFailed     EventType = "tensorlake.sandbox.failed"

	EventTypeApplicationCreated EventType = "tensorlake.application.created"
	EventTypeApplicationUpdated EventType = "tensorlake.application.updated"
	EventTypeApplicationDeleted EventType = "tensorlake.application.deleted"

	EventTypeRequestCreated   EventType = "tensorlake.application.request.created"
	EventTypeRequestCompleted EventType = "tensorlake.application.request.completed"
	EventTypeRequestFailed    EventType = "tensorlake.application.request.failed"
)
