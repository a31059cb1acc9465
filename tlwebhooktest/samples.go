package tlwebhooktest

import (
	"bytes"
	"embed"
	"fmt"
	"maps"

	"github.com/tlwebhook/tlwebhook"
)

// samplesFS holds one realistic payload per modelled event type, named after
// the type: testdata/samples/<event type>.json. These files are the
// project's only copy of the samples; the library's own tests, the CLI's
// demo and send commands use them through this package.
//
//go:embed testdata/samples/*.json
var samplesFS embed.FS

// samples holds the embedded payloads of every type of
// [tlwebhook.EventTypes], read once.
var samples = func() map[tlwebhook.EventType][]byte {
	m := make(map[tlwebhook.EventType][]byte)
	for _, t := range tlwebhook.EventTypes() {
		b, err := samplesFS.ReadFile("testdata/samples/" + string(t) + ".json")
		if err != nil {
			continue // reported by HasSample and the package's tests
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
		panic(fmt.Sprintf("tlwebhooktest.Sample: no sample payload for event type %q (add testdata/samples/%s.json)", t, t))
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
