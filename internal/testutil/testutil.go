// Package testutil holds small helpers shared by this module's tests.
package testutil

import (
	"bytes"
	"sync"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers, for
// capturing logs written by server goroutines while a test polls them.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns the buffer's contents so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len returns the number of bytes written so far.
func (b *SyncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// WantCallback names the Handler callback each event type must reach,
// written out rather than derived from the library so that a wrong mapping
// fails. Keys are tlwebhook.EventType values (this package cannot import
// tlwebhook: the root package's own tests import it).
var WantCallback = map[string]string{
	"tensorlake.document_ingestion.job.created":   "OnJobCreated",
	"tensorlake.document_ingestion.job.failed":    "OnJobFailed",
	"tensorlake.document_ingestion.job.completed": "OnJobCompleted",
	"tlwebhook.workflow.completed":                "OnWorkflowCompleted",
	"tensorlake.sandbox.created":                  "OnSandboxEvent",
	"tensorlake.sandbox.running":                  "OnSandboxEvent",
	"tensorlake.sandbox.suspended":                "OnSandboxEvent",
	"tensorlake.sandbox.resumed":                  "OnSandboxEvent",
	"tensorlake.sandbox.terminated":               "OnSandboxEvent",
	"tensorlake.sandbox.failed":                   "OnSandboxEvent",
	"tensorlake.application.created":              "OnApplicationEvent",
	"tensorlake.application.updated":              "OnApplicationEvent",
	"tensorlake.application.deleted":              "OnApplicationEvent",
	"tensorlake.application.request.created":      "OnRequestEvent",
	"tensorlake.application.request.completed":    "OnRequestEvent",
	"tensorlake.application.request.failed":       "OnRequestEvent",
}
