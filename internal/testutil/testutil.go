// Package testutil holds small helpers shared by this module's tests.
package testutil

import (
	"bytes"
	"strings"
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

// WantCallback names the Handler callback an event type must reach,
// written from the wire format's rules rather than derived from the library
// so that a wrong mapping fails: the three job types and the workflow
// payload have their own callbacks, and every lifecycle type reaches its
// family's callback, types added later included. It returns "" for a type
// that must reach OnUnknown.
func WantCallback(eventType string) string {
	switch eventType {
	case "tensorlake.document_ingestion.job.created":
		return "OnJobCreated"
	case "tensorlake.document_ingestion.job.failed":
		return "OnJobFailed"
	case "tensorlake.document_ingestion.job.completed":
		return "OnJobCompleted"
	case "tlwebhook.workflow.completed":
		return "OnWorkflowCompleted"
	}
	switch {
	case strings.HasPrefix(eventType, "tensorlake.sandbox."):
		return "OnSandboxEvent"
	case strings.HasPrefix(eventType, "tensorlake.application.request."):
		return "OnRequestEvent"
	case strings.HasPrefix(eventType, "tensorlake.application."):
		return "OnApplicationEvent"
	}
	return "OnUnknown"
}
