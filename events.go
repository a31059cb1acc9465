package tlwebhook

import (
	"encoding/json"
	"slices"
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

// An Event is a decoded payload: one of [*JobCreated], [*JobFailed],
// [*JobCompleted], [*WorkflowCompleted], [*SandboxEvent],
// [*ApplicationEvent], [*RequestEvent] or [*UnknownEvent] (the rows of
// [EventKinds]). Use a type switch. The interface is sealed: only this
// package's event structs implement it.
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
	FunctionStatusSuccess FunctionStatus = "success"
	FunctionStatusFailure FunctionStatus = "failure"
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
	return w.functions(func(s FunctionStatus) bool { return s != FunctionStatusSuccess })
}

// Succeeded returns the names of the functions that succeeded, sorted.
func (w *WorkflowCompleted) Succeeded() []string {
	return w.functions(func(s FunctionStatus) bool { return s == FunctionStatusSuccess })
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
// events: a job status that is not final, a lifecycle type of no known
// family, or a payload of another shape; or a modelled event that does not
// fit its struct (breaking [Drift]: Drift says why). Tensorlake adds event
// types and fields over time; they arrive here instead of failing.
type UnknownEvent struct {
	// Envelope holds the envelope fields that decoded when the payload is a
	// lifecycle envelope; it is zero otherwise, except for EventType, which
	// names the modelled type of a job or workflow payload with breaking
	// drift.
	Envelope
	// Data is the envelope's raw data field, if any.
	Data json.RawMessage `json:"data,omitempty"`
	// Raw is the whole payload as received.
	Raw json.RawMessage `json:"-"`
	// Drift lists why a modelled event did not fit its struct (at least
	// one breaking drift, see [Drift.Breaking]), with any additive drift
	// found beside it; nil for a payload that is simply of another shape.
	Drift []Drift `json:"-"`
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
func (*UnknownEvent) isEvent()      {}
