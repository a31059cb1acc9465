package tlwebhook_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// sampleDir holds the project's only copy of the sample payloads, one per
// event type, named after it; tlwebhooktest embeds them.
const sampleDir = "tlwebhooktest/testdata/samples"

// fixtureFile returns the path of a test payload: a sample when name is an
// event type's file, else a fixture of testdata.
func fixtureFile(name string) string {
	if p := filepath.Join(filepath.FromSlash(sampleDir), name); fileExists(p) {
		return p
	}
	return filepath.Join("testdata", name)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// fixtureFiles lists the names of every sample and testdata fixture.
func fixtureFiles(t testing.TB) []string {
	t.Helper()
	var names []string
	for _, dir := range []string{filepath.FromSlash(sampleDir), "testdata"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		require.NoError(t, err)
		for _, f := range files {
			names = append(names, filepath.Base(f))
		}
	}
	return names
}
