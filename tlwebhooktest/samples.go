package tlwebhooktest

import (
	"bytes"
	"embed"
	"fmt"
	"maps"

	"github.com/tlwebhook/tlwebhook"
)

// The files under testdata/samples are copies of the fixtures of the same
// name in the module's testdata directory, which go:embed cannot reach.
// TestSampleCopiesMatchFixtures fails when they differ; this refreshes them:
//
//go:generate go test -run ^TestSampleCopiesMatchFixtures$ -update .

//go:embed testdata/samples/*.json
var samplesFS embed.FS

// sampleFiles names the sample payload of each event type.
var sampleFiles = map[tlwebhook.EventType]string{
	tlwebhook.EventTypeJobCreated:         "job_created.json",
	tlwebhook.EventTypeJobFailed:          "job_failed.json",
	tlwebhook.EventTypeJobCompleted:       "job_completed.json",
	tlwebhook.EventTypeWorkflowCompleted:  "workflow_completed.json",
	tlwebhook.EventTypeSandboxCreated:     "sandbox_created.json",
	tlwebhook.EventTypeSandboxRunning:     "sandbox_running.json",
	tlwebhook.EventTypeSandboxSuspended:   "sandbox_suspended.json",
	tlwebhook.EventTypeSandboxResumed:     "sandbox_resumed.json",
	tlwebhook.EventTypeSandboxTerminated:  "sandbox_terminated.json",
	tlwebhook.EventTypeSandboxFailed:      "sandbox_failed.json",
	tlwebhook.EventTypeApplicationCreated: "application_created.json",
	tlwebhook.EventTypeApplicationUpdated: "application_updated.json",
	tlwebhook.EventTypeApplicationDeleted: "application_deleted.json",
	tlwebhook.EventTypeRequestCreated:     "request_created.json",
	tlwebhook.EventTypeRequestCompleted:   "request_completed.json",
	tlwebhook.EventTypeRequestFailed:      "request_failed.json",
}

// samples holds the embedded payloads, read once.
var samples = func() map[tlwebhook.EventType][]byte {
	m := make(map[tlwebhook.EventType][]byte, len(sampleFiles))
	for t, name := range sampleFiles {
		b, err := samplesFS.ReadFile("testdata/samples/" + name)
		if err != nil {
			panic(fmt.Sprintf("tlwebhooktest: embedded sample %s: %v", name, err))
		}
		m[t] = b
	}
	return m
}()

// Sample returns a realistic payload of event type t, as Tensorlake sends it
// (the examples of Tensorlake's documentation). Every type of
// [tlwebhook.EventTypes] has one; for the workflow payload, use
// [tlwebhook.EventTypeWorkflowCompleted]. The caller owns the returned
// slice. Sample panics for a type without a sample; see [HasSample].
func Sample(t tlwebhook.EventType) []byte {
	b, ok := samples[t]
	if !ok {
		panic(fmt.Sprintf("tlwebhooktest.Sample: no sample payload for event type %q", t))
	}
	return bytes.Clone(b)
}

// HasSample reports whether [Sample] has a payload for t.
func HasSample(t tlwebhook.EventType) bool {
	_, ok := samples[t]
	return ok
}

// Samples returns the sample payload of every event type that has one. Use
// [tlwebhook.EventTypes] for a fixed order. The caller owns the returned
// map and slices.
func Samples() map[tlwebhook.EventType][]byte {
	m := maps.Clone(samples)
	for t, b := range m {
		m[t] = bytes.Clone(b)
	}
	return m
}
