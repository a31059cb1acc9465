package tlwebhooktest

import (
	"bytes"
	"embed"
	"fmt"
	"maps"
	"strings"

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
// [tlwebhook.EventTypeWorkflowCompleted]. t may also be an unambiguous
// suffix of a type, such as "job.completed" or "sandbox.failed" (see
// [SampleType]). The caller owns the returned slice. Sample panics for a
// type without a sample, naming the types that have one; see [HasSample].
func Sample(t tlwebhook.EventType) []byte {
	b, ok := samples[t]
	if !ok {
		full, err := SampleType(string(t))
		if err != nil {
			panic("tlwebhooktest.Sample: " + err.Error())
		}
		b = samples[full]
	}
	return bytes.Clone(b)
}

// SampleType returns the event type that name designates among those with a
// sample: the type itself, or the one type that ends with "." + name (for
// example "job.completed" or "sandbox.failed"). The error lists the known
// types, or the ones name could mean.
func SampleType(name string) (tlwebhook.EventType, error) {
	var matches []tlwebhook.EventType
	for _, t := range tlwebhook.EventTypes() {
		if _, ok := samples[t]; !ok {
			continue
		}
		if string(t) == name {
			return t, nil
		}
		if strings.HasSuffix(string(t), "."+name) {
			matches = append(matches, t)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", fmt.Errorf("no sample payload for event type %q; known types: %s", name, joinTypes(tlwebhook.EventTypes()))
	}
	return "", fmt.Errorf("event type %q is ambiguous: %s", name, joinTypes(matches))
}

func joinTypes(types []tlwebhook.EventType) string {
	s := make([]string, len(types))
	for i, t := range types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
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
