package tlwebhooktest

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "copy the module's testdata fixtures over testdata/samples")

// TestSampleCopiesMatchFixtures keeps testdata/samples identical to the
// module's fixtures of the same name. Run `go generate` (or this test with
// -update) after changing a fixture.
func TestSampleCopiesMatchFixtures(t *testing.T) {
	for _, name := range sortedNames() {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("..", "testdata", name))
			require.NoError(t, err, "the module's fixture")
			copyPath := filepath.Join("testdata", "samples", name)
			if *update {
				require.NoError(t, os.WriteFile(copyPath, want, 0o644))
			}
			got, err := os.ReadFile(copyPath)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(got),
				"%s differs from ../testdata/%s: run go generate ./tlwebhooktest", copyPath, name)
			if !*update {
				embedded, err := samplesFS.ReadFile("testdata/samples/" + name)
				require.NoError(t, err)
				assert.Equal(t, string(want), string(embedded))
			}
		})
	}
}

// TestNoStraySampleFiles fails when testdata/samples holds a file that no
// event type uses, which would be embedded for nothing.
func TestNoStraySampleFiles(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("testdata", "samples"))
	require.NoError(t, err)
	var onDisk []string
	for _, e := range entries {
		onDisk = append(onDisk, e.Name())
	}
	assert.Equal(t, sortedNames(), onDisk)
}

func sortedNames() []string {
	var names []string
	for _, name := range sampleFiles {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
