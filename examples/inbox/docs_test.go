package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docsFile is the inbox's guide; its Go snippets must compile.
const docsFile = "../../docs/inbox.md"

// TestDocsSnippetsAreExamples checks that every Go snippet of docs/inbox.md
// is, line for line (ignoring indentation and blank lines), part of the body
// of an Example function of this module or of riverinbox, so that each one
// compiles under go test and cannot drift into code that no longer builds.
func TestDocsSnippetsAreExamples(t *testing.T) {
	md, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	snippets := regexp.MustCompile("(?ms)^```go\n(.*?)^```").FindAllSubmatch(md, -1)
	if len(snippets) == 0 {
		t.Fatalf("%s has no Go snippet", docsFile)
	}
	var bodies []string
	for _, pattern := range []string{"*_test.go", "../../riverinbox/*_test.go"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			bodies = append(bodies, exampleBodies(t, name)...)
		}
	}
	for i, s := range snippets {
		want := "\n" + squeeze(string(s[1])) + "\n"
		found := false
		for _, b := range bodies {
			if strings.Contains("\n"+b+"\n", want) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: Go snippet %d is not part of any Example function:\n%s", docsFile, i+1, s[1])
		}
	}
}

// exampleBodies returns the squeezed bodies of the Example functions of
// the Go file name.
func exampleBodies(t *testing.T, name string) []string {
	t.Helper()
	src, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || !strings.HasPrefix(fn.Name.Name, "Example") || fn.Body == nil {
			continue
		}
		body := src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset]
		out = append(out, squeeze(string(body)))
	}
	return out
}

// squeeze trims every line and drops the blank ones.
func squeeze(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}
