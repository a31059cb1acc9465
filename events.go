package tlwebhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// An EventType names a kind of Tensorlake event, such as
// "tensorlake.sandbox.failed".
type EventType string

// Event types of the document-ingestion job events. Their payloads do not
// carry the type: it follows from the payload's status field.
const (
	EventTypeJobCreated   EventType = "tensorlake.document_ingestion.job.created"
	EventTypeJobFailed    EventType = "tensorlake.document_ingestion.job.failed"
	EventTypeJobCompleted EventType = "tensorlake.document_ingestion.job.completed"
)

// EventTypeWorkflowCompleted is the type this library gives the workflow
// payload, which Tensorlake sends when all functions of an application have
// finished for one input. Tensorlake names no event type for it and the
// payload carries none: this value is tlwebhook's own and never appears on
// the wire.
const EventTypeWorkflowCompleted EventType = "tlwebhook.workflow.completed"

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

// Prefixes of the lifecycle event families. A type not listed above but
// starting with one of these still decodes as its family's event.
const (
	sandboxPrefix     = "tensorlake.sandbox."
	requestPrefix     = "tensorlake.application.request."
	applicationPrefix = "tensorlake.application."
)

var knownEventTypes = []EventType{
	EventTypeJobCreated, EventTypeJobFailed, EventTypeJobCompleted,
	EventTypeWorkflowCompleted,
	EventTypeSandboxCreated, EventTypeSandboxRunning, EventTypeSandboxSuspended,
	EventTypeSandboxResumed, EventTypeSandboxTerminated, EventTypeSandboxFailed,
	EventTypeApplicationCreated, EventTypeApplicationUpdated, EventTypeApplicationDeleted,
	EventTypeRequestCreated, EventTypeRequestCompleted, EventTypeRequestFailed,
}

// EventTypes returns every event type this version of the library models,
// in a fixed order.
func EventTypes() []EventType { return slices.Clone(knownEventTypes) }

// Known reports whether t is one of the types returned by [EventTypes].
func (t EventType) Known() bool { return slices.Contains(knownEventTypes, t) }

// An Event is a decoded payload: one of [*JobCreated], [*JobFailed],
// [*JobCompleted], [*WorkflowCompleted], [*SandboxEvent],
// [*ApplicationEvent], [*RequestEvent] or [*UnknownEvent]. Use a type switch.
type Event interface {
	// Type returns the event's type. For an [*UnknownEvent] it is the
	// envelope's event_type, or empty when the payload has none.
	Type() EventType
	isEvent()
}

// JobStatus is the status of a document-ingestion job.
type JobStatus string

// Job statuses. Pending, Failure and Successful (and the older Success) make
// the job events; the intermediate ones are known values of Tensorlake's
// parse-status enumeration and arrive as [*UnknownEvent] if ever delivered.
const (
	JobStatusPending    JobStatus = "pending"
	JobStatusFailure    JobStatus = "failure"
	JobStatusSuccessful JobStatus = "successful"
	// JobStatusSuccess is the older spelling of JobStatusSuccessful.
	JobStatusSuccess          JobStatus = "success"
	JobStatusProcessing       JobStatus = "processing"
	JobStatusDetectingLayout  JobStatus = "detecting_layout"
	JobStatusLayoutDetected   JobStatus = "layout_detected"
	JobStatusExtractingData   JobStatus = "extracting_data"
	JobStatusExtractedData    JobStatus = "extracted_data"
	JobStatusFormattingOutput JobStatus = "formatting_output"
	JobStatusFormattedOutput  JobStatus = "formatted_output"
)

// JobCreated is sent when Tensorlake has received a request to parse a
// document and started parsing (status pending).
type JobCreated struct {
	JobID     string    `json:"job_id"`
	Status    JobStatus `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// JobFailed is sent when a parsing job fails (status failure).
type JobFailed struct {
	JobID      string    `json:"job_id"`
	Status     JobStatus `json:"status"`
	Error      string    `json:"error"`
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// JobCompleted is sent when a parsing job succeeds (status successful, or
// success in older deliveries).
type JobCompleted struct {
	JobID      string    `json:"job_id"`
	Status     JobStatus `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at"`
	Usage      Usage     `json:"usage"`
}

// Usage counts what a completed job consumed.
type Usage struct {
	PagesParsed                   int64 `json:"pages_parsed"`
	ExtractionInputTokensUsed     int64 `json:"extraction_input_tokens_used"`
	ExtractionOutputTokensUsed    int64 `json:"extraction_output_tokens_used"`
	OCRInputTokensUsed            int64 `json:"ocr_input_tokens_used"`
	OCROutputTokensUsed           int64 `json:"ocr_output_tokens_used"`
	SignatureDetectedPages        int64 `json:"signature_detected_pages"`
	StrikethroughDetectedPages    int64 `json:"strikethrough_detected_pages"`
	SummarizationInputTokensUsed  int64 `json:"summarization_input_tokens_used"`
	SummarizationOutputTokensUsed int64 `json:"summarization_output_tokens_used"`
}

// FunctionStatus is the outcome of one function of a workflow.
type FunctionStatus string

// Function outcomes.
const (
	FunctionSuccess FunctionStatus = "success"
	FunctionFailure FunctionStatus = "failure"
)

// WorkflowCompleted is sent when all functions of an application have
// finished running for one input. Its [Event.Type] is
// [EventTypeWorkflowCompleted].
type WorkflowCompleted struct {
	WorkflowName string                    `json:"workflow_name"`
	InvocationID string                    `json:"invocation_id"`
	FnStatus     map[string]FunctionStatus `json:"fn_status"`
}

// Failed returns the names of the functions that did not succeed, sorted.
// A status other than success counts as a failure.
func (w *WorkflowCompleted) Failed() []string {
	return w.functions(func(s FunctionStatus) bool { return s != FunctionSuccess })
}

// Succeeded returns the names of the functions that succeeded, sorted.
func (w *WorkflowCompleted) Succeeded() []string {
	return w.functions(func(s FunctionStatus) bool { return s == FunctionSuccess })
}

// AllSucceeded reports whether every function succeeded. It is true for a
// workflow with no functions.
func (w *WorkflowCompleted) AllSucceeded() bool { return len(w.Failed()) == 0 }

func (w *WorkflowCompleted) functions(keep func(FunctionStatus) bool) []string {
	var names []string
	for name, s := range w.FnStatus {
		if keep(s) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// UnknownEvent is a verified JSON object that is none of the modelled
// events: a job status that is not final, a lifecycle type or schema version
// this library does not know, or a payload of another shape. Tensorlake adds
// event types and fields over time; they arrive here instead of failing.
type UnknownEvent struct {
	// Envelope holds the envelope fields that decoded when the payload is a
	// lifecycle envelope; it is zero otherwise.
	Envelope
	// Data is the envelope's raw data field, if any.
	Data json.RawMessage `json:"data,omitempty"`
	// Raw is the whole payload as received.
	Raw json.RawMessage `json:"-"`
}

// MarshalJSON returns the payload as received.
func (e UnknownEvent) MarshalJSON() ([]byte, error) {
	if e.Raw == nil {
		return []byte("{}"), nil
	}
	return e.Raw, nil
}

// Type returns the envelope's event_type, or the empty string.
func (e *UnknownEvent) Type() EventType { return e.EventType }

// Type returns [EventTypeJobCreated].
func (*JobCreated) Type() EventType { return EventTypeJobCreated }

// Type returns [EventTypeJobFailed].
func (*JobFailed) Type() EventType { return EventTypeJobFailed }

// Type returns [EventTypeJobCompleted].
func (*JobCompleted) Type() EventType { return EventTypeJobCompleted }

// Type returns [EventTypeWorkflowCompleted].
func (*WorkflowCompleted) Type() EventType { return EventTypeWorkflowCompleted }

func (*JobCreated) isEvent()        {}
func (*JobFailed) isEvent()         {}
func (*JobCompleted) isEvent()      {}
func (*WorkflowCompleted) isEvent() {}
func (*SandboxEvent) isEvent()      {}
func (*ApplicationEvent) isEvent()  {}
func (*RequestEvent) isEvent()      {}
func (*UnknownEvent) isEvent()      {}

// probe holds the fields that decide what a payload is.
type probe struct {
	EventType    json.RawMessage `json:"event_type"`
	Status       json.RawMessage `json:"status"`
	WorkflowName json.RawMessage `json:"workflow_name"`
	InvocationID json.RawMessage `json:"invocation_id"`
	FnStatus     json.RawMessage `json:"fn_status"`
}

// ParseEvent decodes a payload that has already been verified, for example
// one taken from a queue after [Verifier.Verify]. It does not check
// signatures.
//
// A payload with an event_type field is a lifecycle envelope, decoded by its
// family ([*SandboxEvent], [*ApplicationEvent], [*RequestEvent]); one with
// workflow fields is a [*WorkflowCompleted]; one with a final job status is
// a job event. Anything else that is a JSON object is an [*UnknownEvent].
//
// ParseEvent returns an error wrapping [ErrInvalidPayload] when the payload
// is not a single JSON object, or is a known event whose fields have the
// wrong JSON type (or a time that is not RFC 3339).
func ParseEvent(payload []byte) (Event, error) {
	if ev, ok := fastParse(payload); ok {
		return ev, nil
	}
	return parseEventSlow(payload)
}

// parseEventSlow is ParseEvent's encoding/json path: the reference that
// fastParse must agree with, and the decision for everything it declines.
func parseEventSlow(payload []byte) (Event, error) {
	trimmed := bytes.TrimLeft(payload, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidPayload)
	}
	var p probe
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidPayload, describeJSONError(err))
	}
	if t, ok := jsonString(p.EventType); ok {
		return parseEnvelope(EventType(t), payload)
	}
	if present(p.WorkflowName) || present(p.InvocationID) || present(p.FnStatus) {
		ev := new(WorkflowCompleted)
		return decodeKnown(payload, ev, EventTypeWorkflowCompleted)
	}
	if s, ok := jsonString(p.Status); ok {
		switch JobStatus(s) {
		case JobStatusPending:
			return decodeKnown(payload, new(JobCreated), EventTypeJobCreated)
		case JobStatusFailure:
			return decodeKnown(payload, new(JobFailed), EventTypeJobFailed)
		case JobStatusSuccessful, JobStatusSuccess:
			return decodeKnown(payload, new(JobCompleted), EventTypeJobCompleted)
		}
	}
	u, _ := newUnknown(payload)
	return u, nil
}

func decodeKnown[T any, P interface {
	*T
	Event
}](payload []byte, ev P, t EventType) (Event, error) {
	err := json.Unmarshal(payload, ev)
	if err == nil {
		err = checkTimes(ev)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalidPayload, t, describeJSONError(err))
	}
	return ev, nil
}

// parseEnvelope decodes a lifecycle envelope of type t. A type outside the
// known families, an event_version that does not decode, or a new type or
// version whose data does not fit the family's structure gives an
// [*UnknownEvent]: a validly signed envelope is never rejected for being new.
func parseEnvelope(t EventType, payload []byte) (Event, error) {
	var ev Event
	switch s := string(t); {
	case strings.HasPrefix(s, sandboxPrefix):
		ev = new(SandboxEvent)
	case strings.HasPrefix(s, requestPrefix):
		ev = new(RequestEvent)
	case strings.HasPrefix(s, applicationPrefix):
		ev = new(ApplicationEvent)
	default:
		u, _ := newUnknown(payload)
		return u, nil
	}
	err := json.Unmarshal(payload, ev)
	if err == nil {
		err = checkTimes(ev)
	}
	if err == nil {
		return ev, nil
	}
	u, versionOK := newUnknown(payload)
	if t.Known() && versionOK && u.EventVersion == 1 {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalidPayload, t, describeJSONError(err))
	}
	return u, nil
}

// lenientEnvelope holds envelope fields undecoded, so that each can be
// decoded on its own and a bad one does not lose the others.
type lenientEnvelope struct {
	EventID        json.RawMessage `json:"event_id"`
	EventType      json.RawMessage `json:"event_type"`
	EventVersion   json.RawMessage `json:"event_version"`
	OccurredAt     json.RawMessage `json:"occurred_at"`
	ProjectID      json.RawMessage `json:"project_id"`
	SourceID       json.RawMessage `json:"source_id"`
	SourceRevision json.RawMessage `json:"source_revision"`
	SourceOrdinal  json.RawMessage `json:"source_ordinal"`
	Data           json.RawMessage `json:"data"`
}

// newUnknown builds an UnknownEvent from a payload that is known to be a
// valid JSON object, decoding what it can of an envelope. It also reports
// whether event_version was present and decoded.
func newUnknown(payload []byte) (*UnknownEvent, bool) {
	u := &UnknownEvent{Raw: bytes.Clone(payload)}
	var le lenientEnvelope
	_ = json.Unmarshal(payload, &le) // payload is valid JSON; fields are raw
	decodeField(le.EventID, &u.EventID)
	decodeField(le.EventType, &u.Envelope.EventType)
	ok := decodeField(le.EventVersion, &u.EventVersion)
	decodeField(le.OccurredAt, &u.OccurredAt)
	decodeField(le.ProjectID, &u.ProjectID)
	decodeField(le.SourceID, &u.SourceID)
	decodeField(le.SourceRevision, &u.SourceRevision)
	decodeField(le.SourceOrdinal, &u.SourceOrdinal)
	if present(le.Data) {
		u.Data = le.Data
	}
	return u, ok
}

func decodeField[T any](raw json.RawMessage, dst *T) bool {
	if !present(raw) {
		return false
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return false
	}
	*dst = v
	return true
}

// present reports whether a raw field was given a non-null value.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// describeJSONError describes a decoding error without quoting payload
// content: field paths and types only.
func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		kind, _, _ := strings.Cut(te.Value, " ") // "number 1.5": keep the kind only
		return fmt.Sprintf("field %s: got JSON %s, want %s", field, kind, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at offset %d", se.Offset)
	}
	var pe *time.ParseError
	if errors.As(err, &pe) || errors.Is(err, errTimeRange) {
		return "a time is not RFC 3339"
	}
	return "does not decode"
}

// errTimeRange reports a time that time.Parse accepts but RFC 3339 does
// not, such as an offset of +24:00, and that encoding/json cannot marshal.
var errTimeRange = errors.New("time offset out of range")

// checkTimes rejects decoded times that could not be marshalled back.
func checkTimes(ev Event) error {
	var buf [3]time.Time
	ts := buf[:0]
	switch e := ev.(type) {
	case *JobCreated:
		ts = append(ts, e.CreatedAt)
	case *JobFailed:
		ts = append(ts, e.CreatedAt, e.FinishedAt)
	case *JobCompleted:
		ts = append(ts, e.CreatedAt, e.FinishedAt)
	case *SandboxEvent:
		ts = append(ts, e.OccurredAt, e.Data.Sandbox.CreatedAt)
	case *ApplicationEvent:
		ts = append(ts, e.OccurredAt, e.Data.Application.CreatedAt)
	case *RequestEvent:
		ts = append(ts, e.OccurredAt, e.Data.Request.CreatedAt)
		if e.Data.Request.FinishedAt != nil {
			ts = append(ts, *e.Data.Request.FinishedAt)
		}
	}
	for _, t := range ts {
		if !timeInRange(t) {
			return errTimeRange
		}
	}
	return nil
}

// timeInRange reports whether t's zone offset is one RFC 3339 (and so
// json.Marshal) allows: strictly within ±24 hours. time.Parse accepts more.
func timeInRange(t time.Time) bool {
	_, off := t.Zone()
	return off > -24*3600 && off < 24*3600
}
