package tlwebhook

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEnumerationsListEveryConstant: every string constant declared for an
// enumeration type of the event structs is in enumerations (else a
// documented value would be reported as drift), and nothing else is.
func TestEnumerationsListEveryConstant(t *testing.T) {
	byName := map[string][]string{}
	for rt := range enumerations {
		byName[rt.Name()] = nil
	}
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		require.NoError(t, err)
		for _, decl := range af.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				id, ok := vs.Type.(*ast.Ident)
				if !ok {
					continue
				}
				if _, enum := byName[id.Name]; !enum {
					continue
				}
				for _, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					require.True(t, ok, "%s: constant of %s is not a literal", fset.Position(v.Pos()), id.Name)
					s, err := strconv.Unquote(lit.Value)
					require.NoError(t, err)
					byName[id.Name] = append(byName[id.Name], s)
				}
			}
		}
	}
	for rt, listed := range enumerations {
		declared := byName[rt.Name()]
		require.NotEmpty(t, declared, "no constants of %s found", rt.Name())
		assert.ElementsMatch(t, declared, listed, "enumerations[%s] must list exactly its constants", rt.Name())
	}
	// Every string type of the event structs other than EventType is an
	// enumeration, or a plain string.
	for i := range schemas {
		for _, p := range schemas[i].probes {
			assert.False(t, slices.Contains(p.known, ""), p.pointer)
		}
	}
}

// TestSchemasCoverEveryEnumeration: each enumeration type is reachable from
// the event table (its probes), so none is listed for nothing.
func TestSchemasCoverEveryEnumeration(t *testing.T) {
	seen := map[string]bool{}
	for i := range schemas {
		for _, p := range schemas[i].probes {
			seen[strings.Join(p.known, ",")] = true
		}
	}
	for rt, known := range enumerations {
		assert.True(t, seen[strings.Join(known, ",")], "%s is not used by any event struct", rt)
	}
}

// TestDriftAlreadyReportedBuildsNoStrings: once a Handler has reported a
// payload's drift, another delivery of the same shape reuses the
// remembered pointers: its allocations do not grow with the number of
// unmodelled members.
func TestDriftAlreadyReportedBuildsNoStrings(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector randomises sync.Pool; .ci/run checks allocations without -race")
	}
	payload := func(n int) []byte {
		var b strings.Builder
		b.WriteString(`{"job_id":"parse_1","status":"pending","created_at":"2023-10-01T12:00:00Z"`)
		for i := range n {
			b.WriteString(`,"member_` + strconv.Itoa(i) + `":1`)
		}
		return []byte(b.String() + "}")
	}
	allocs := func(n int) float64 {
		h, err := NewHandler("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(t, err)
		p := payload(n)
		ctx := context.Background()
		require.NoError(t, h.Process(ctx, Delivery{ID: "msg_1"}, p)) // reports, remembers
		return testing.AllocsPerRun(50, func() {
			if err := h.Process(ctx, Delivery{ID: "msg_1"}, p); err != nil {
				t.Fatal(err)
			}
		})
	}
	few, many := allocs(2), allocs(60)
	assert.Equal(t, few, many, "allocations with 2 and with 60 drifts already reported")
}
