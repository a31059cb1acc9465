package tlwebhook_test

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeSnippetsAreExamples checks that every Go snippet of README.md
// and of the guides in docs/ is, line for line, part of an Example function of the repository (any
// module's *_test.go), so that each one compiles and runs under go test
// (with -race in the README's test command), and none can drift into code
// that no longer builds. Leading whitespace and blank lines are ignored.
func TestReadmeSnippetsAreExamples(t *testing.T) {
	docs, err := filepath.Glob("docs/*.md")
	require.NoError(t, err)
	type block struct{ file, text string }
	var blocks []block
	for _, name := range append([]string{"README.md"}, docs...) {
		md, err := os.ReadFile(name)
		require.NoError(t, err)
		for _, b := range goBlocks(md) {
			blocks = append(blocks, block{name, b})
		}
	}
	require.NotEmpty(t, blocks)

	var examples []string // normalized lines of each Example function
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		examples = append(examples, exampleBodies(src)...)
		return nil
	})
	require.NoError(t, err)

	for i, b := range blocks {
		lines := normalizeLines(b.text)
		found := false
		for _, ex := range examples {
			if strings.Contains("\n"+ex+"\n", "\n"+strings.Join(lines, "\n")+"\n") {
				found = true
				break
			}
		}
		assert.True(t, found, "%s: Go snippet %d is not part of any Example function:\n%s", b.file, i+1, b.text)
	}
}

var goFence = regexp.MustCompile("(?ms)^```go\n(.*?)^```")

func goBlocks(md []byte) []string {
	var out []string
	for _, m := range goFence.FindAllSubmatch(md, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

// exampleBodies returns the normalized lines of each func Example... in src.
func exampleBodies(src []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cur []string
	in := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "func Example"):
			in, cur = true, nil
		case in && line == "}":
			out = append(out, strings.Join(normalizeLines(strings.Join(cur, "\n")), "\n"))
			in = false
		case in:
			cur = append(cur, line)
		}
	}
	return out
}

func normalizeLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestExamplesImportNoInternalPackage keeps the examples copyable: a user's
// module cannot import this module's internal packages.
func TestExamplesImportNoInternalPackage(t *testing.T) {
	var files []string
	for _, pattern := range []string{"examples/*/*.go", "*example_test.go", "*/example_test.go", "*/*example_test.go"} {
		m, err := filepath.Glob(pattern)
		require.NoError(t, err)
		files = append(files, m...)
	}
	require.NotEmpty(t, files)
	for _, f := range files {
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		assert.NotContains(t, string(src), "tlwebhook/internal/", "%s imports an internal package", f)
	}
}
