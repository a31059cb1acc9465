package tlwebhooktest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
)

// TestEverySampleIsUsed fails when testdata/samples holds a file that names
// no modelled event type (it would be embedded for nothing, and a typo in a
// new sample's name would go unnoticed), and when a modelled type has no
// sample.
func TestEverySampleIsUsed(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("testdata", "samples"))
	require.NoError(t, err)
	var onDisk []string
	for _, e := range entries {
		onDisk = append(onDisk, strings.TrimSuffix(e.Name(), ".json"))
	}
	var want []string
	for _, et := range tlwebhook.EventTypes() {
		want = append(want, string(et))
		assert.True(t, HasSample(et), "no sample for %s: add testdata/samples/%s.json", et, et)
	}
	slices.Sort(want)
	assert.Equal(t, want, onDisk)
}

// TestSampleBySuffix: a suffix names its type as in the CLI, and an unknown
// or ambiguous name panics with the types it could mean, not a file path.
func TestSampleBySuffix(t *testing.T) {
	assert.Equal(t, Sample(tlwebhook.EventTypeJobCompleted), Sample("job.completed"))
	assert.Equal(t, Sample(tlwebhook.EventTypeSandboxFailed), Sample("sandbox.failed"))
	for name, want := range map[string]string{
		"job.nonesuch": "known types: " + string(tlwebhook.EventTypes()[0]),
		"created":      "is ambiguous: ",
	} {
		func() {
			defer func() {
				msg := fmt.Sprint(recover())
				assert.Contains(t, msg, want)
				assert.NotContains(t, msg, "testdata", "no library-internal path")
			}()
			Sample(tlwebhook.EventType(name))
		}()
	}
}
