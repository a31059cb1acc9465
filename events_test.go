package tlwebhook_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tl "github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/internal/testutil"
)

// fixtureCase says what one file of testdata/ must decode to.
type fixtureCase struct {
	file string
	// want is a nil pointer of the expected concrete type.
	want tl.Event
	// callback is the Handler method that must receive the event.
	callback string
	// check asserts the key decoded fields.
	check func(t *testing.T, ev tl.Event)
	// dropped lists the input leaf paths that the type does not model and
	// that marshalling therefore loses. A fixture with dropped or zeroFilled
	// paths is compared field by field (see assertModelledRoundTrip); every
	// other fixture must marshal back semantically equal to the input.
	dropped []string
	// zeroFilled lists modelled paths absent from the input that the
	// marshalled event carries with their zero value.
	zeroFilled []string
	// breaking marks a fixture with breaking drift: ParseEvent returns an
	// error wrapping ErrSchemaDrift beside its UnknownEvent, and a Handler
	// without OnUnknown or OnAny answers 500.
	breaking bool
}

func (c fixtureCase) lossy() bool { return len(c.dropped) > 0 || len(c.zeroFilled) > 0 }

// as asserts that ev has type T and returns it.
func eventAs[T tl.Event](t *testing.T, ev tl.Event) T {
	t.Helper()
	v, ok := ev.(T)
	require.Truef(t, ok, "event is %T, want %T", ev, *new(T))
	return v
}

func utcAt(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
	return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
}

func strRef(s string) *string { return &s }

// fixtureCases covers every file in testdata/*.json; TestFixtureTableIsComplete
// fails when a fixture is added without a row here.
var fixtureCases = []fixtureCase{
	{file: "tensorlake.document_ingestion.job.created.json", want: (*tl.JobCreated)(nil), callback: "OnJobCreated", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.JobCreated](t, ev)
		assert.Equal(t, "parse_XXX", e.JobID)
		assert.Equal(t, tl.JobStatusPending, e.Status)
		assert.True(t, utcAt(2023, 10, 1, 12, 0, 0, 0).Equal(e.CreatedAt), e.CreatedAt)
	}},
	{file: "job_created_dataset_null.json", want: (*tl.JobCreated)(nil), callback: "OnJobCreated", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.JobCreated](t, ev)
		assert.Equal(t, "parse_ds", e.JobID)
		assert.True(t, utcAt(2023, 6, 1, 8, 0, 0, 0).Equal(e.CreatedAt), e.CreatedAt)
		_, off := e.CreatedAt.Zone()
		assert.Equal(t, 2*3600, off, "the +02:00 offset is kept")
	}, dropped: []string{"dataset"}},
	{file: "tensorlake.document_ingestion.job.failed.json", want: (*tl.JobFailed)(nil), callback: "OnJobFailed", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.JobFailed](t, ev)
		assert.Equal(t, "parse_XXX", e.JobID)
		assert.Equal(t, tl.JobStatusFailure, e.Status)
		assert.Equal(t, "Error message describing the failure", e.Error)
		assert.True(t, utcAt(2023, 10, 1, 12, 5, 0, 0).Equal(e.FinishedAt), e.FinishedAt)
	}},
	{file: "job_failed_unicode.json", want: (*tl.JobFailed)(nil), callback: "OnJobFailed", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.JobFailed](t, ev)
		assert.Equal(t, "parse_ünïcødé_文書", e.JobID)
		assert.Equal(t, "Échec de l'analyse: \"页面 3\" illisible — emoji 📄 and escaped 😀", e.Error)
		assert.True(t, utcAt(2023, 10, 1, 12, 5, 0, 500_000_000).Equal(e.FinishedAt), e.FinishedAt)
	}},
	{file: "tensorlake.document_ingestion.job.completed.json", want: (*tl.JobCompleted)(nil), callback: "OnJobCompleted", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.JobCompleted](t, ev)
		assert.Equal(t, "parse_XXX", e.JobID)
		assert.Equal(t, tl.JobStatusSuccessful, e.Status)
		assert.Equal(t, tl.Usage{PagesParsed: 10}, e.Usage)
		assert.True(t, utcAt(2023, 10, 1, 12, 0, 0, 0).Equal(e.CreatedAt), e.CreatedAt)
		assert.True(t, utcAt(2023, 10, 1, 12, 5, 0, 0).Equal(e.FinishedAt), e.FinishedAt)
	}},
	{file: "job_completed_compact.json", want: (*tl.JobCompleted)(nil), callback: "OnJobCompleted", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.JobCompleted](t, ev)
		assert.Equal(t, "parse_7Hc2kQ", e.JobID)
		assert.Equal(t, tl.Usage{
			PagesParsed: 42, ExtractionInputTokensUsed: 1234, ExtractionOutputTokensUsed: 567,
			OCRInputTokensUsed: 8901, OCROutputTokensUsed: 2345, SignatureDetectedPages: 3,
			StrikethroughDetectedPages: 1, SummarizationInputTokensUsed: 678, SummarizationOutputTokensUsed: 90,
		}, e.Usage)
		assert.True(t, utcAt(2025, 3, 14, 9, 26, 53, 589_000_000).Equal(e.CreatedAt), e.CreatedAt)
	}},
	{file: "job_completed_extra_fields.json", want: (*tl.JobCompleted)(nil), callback: "OnJobCompleted", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.JobCompleted](t, ev)
		assert.Equal(t, "parse_extra", e.JobID)
		assert.Equal(t, tl.Usage{
			PagesParsed: 3, ExtractionInputTokensUsed: 1, ExtractionOutputTokensUsed: 2,
			OCRInputTokensUsed: 3, OCROutputTokensUsed: 4, SignatureDetectedPages: 5,
			StrikethroughDetectedPages: 6, SummarizationInputTokensUsed: 7, SummarizationOutputTokensUsed: 8,
		}, e.Usage)
	}, dropped: []string{"dataset", "labels.team", "labels.priority", "output_url", "usage.future_counter"}},
	{file: "job_completed_legacy_success.json", want: (*tl.JobCompleted)(nil), callback: "OnJobCompleted", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.JobCompleted](t, ev)
		assert.Equal(t, "parse_legacy", e.JobID)
		assert.Equal(t, tl.JobStatusSuccess, e.Status, "the legacy spelling is kept as sent")
		assert.Equal(t, tl.Usage{PagesParsed: 1}, e.Usage)
	}, dropped: []string{"dataset"}, zeroFilled: []string{
		"usage.extraction_input_tokens_used", "usage.extraction_output_tokens_used",
		"usage.ocr_input_tokens_used", "usage.ocr_output_tokens_used",
		"usage.signature_detected_pages", "usage.strikethrough_detected_pages",
		"usage.summarization_input_tokens_used", "usage.summarization_output_tokens_used",
	}},
	{file: "job_processing.json", want: (*tl.UnknownEvent)(nil), callback: "OnUnknown", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.UnknownEvent](t, ev)
		assert.Equal(t, tl.EventType(""), e.Type())
		assert.Empty(t, e.EventID)
		assert.Nil(t, e.Data)
	}},
	{file: "tlwebhook.workflow.completed.json", want: (*tl.WorkflowCompleted)(nil), callback: "OnWorkflowCompleted", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.WorkflowCompleted](t, ev)
		assert.Equal(t, tl.EventTypeWorkflowCompleted, e.Type())
		assert.Equal(t, "workflow_XXXX", e.WorkflowName)
		assert.Equal(t, "invocation_XXXX", e.InvocationID)
		assert.Equal(t, map[string]tl.FunctionStatus{"fn_A": tl.FunctionStatusSuccess, "fn_B": tl.FunctionStatusFailure}, e.FnStatus)
	}},
	{file: "workflow_completed_pretty.json", want: (*tl.WorkflowCompleted)(nil), callback: "OnWorkflowCompleted", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.WorkflowCompleted](t, ev)
		assert.Equal(t, "workflow_ingest_pipeline", e.WorkflowName)
		assert.Equal(t, "invocation_01HZX3", e.InvocationID)
		assert.Len(t, e.FnStatus, 4)
	}},
	{file: "tensorlake.sandbox.created.json", want: (*tl.SandboxEvent)(nil), callback: "OnSandboxEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.SandboxEvent](t, ev)
		assert.Equal(t, tl.EventTypeSandboxCreated, e.Type())
		assert.Equal(t, "evt_019f95fb-7f33-7000-8000-000000000001", e.EventID)
		assert.Equal(t, 1, e.EventVersion)
		assert.Equal(t, "project_123", e.ProjectID)
		assert.Equal(t, "src_01k0example", e.SourceID)
		assert.Equal(t, tl.Revision("81240"), e.SourceRevision)
		assert.True(t, utcAt(2026, 7, 24, 20, 10, 0, 500_000_000).Equal(e.OccurredAt), e.OccurredAt)
		s := e.Data.Sandbox
		assert.Equal(t, "9q2j1f4n6y8x0r3k5m7pa", s.ID)
		assert.Equal(t, tl.SandboxTypeEphemeral, s.Type)
		assert.Equal(t, tl.SandboxStatusPending, s.Status)
		assert.Equal(t, int64(1), s.GenerationID)
		assert.Equal(t, tl.Resources{CPUs: 2, MemoryMB: 4096, DiskMB: 20480}, s.Resources)
	}},
	{file: "tensorlake.sandbox.running.json", want: (*tl.SandboxEvent)(nil), callback: "OnSandboxEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.SandboxEvent](t, ev)
		assert.Equal(t, tl.EventTypeSandboxRunning, e.Type())
		require.NotNil(t, e.Data.PreviousStatus)
		assert.Equal(t, tl.SandboxStatusPending, *e.Data.PreviousStatus)
		assert.Equal(t, strRef("build-runner"), e.Data.Sandbox.Name)
		assert.Equal(t, tl.Resources{CPUs: 0.5, MemoryMB: 1024, DiskMB: 10240, GPUCount: 1, GPUModel: strRef("nvidia-a10g")}, e.Data.Sandbox.Resources)
		assert.True(t, utcAt(2026, 7, 24, 20, 10, 3, 250_000_000).Equal(e.OccurredAt), e.OccurredAt)
	}},
	{file: "tensorlake.sandbox.suspended.json", want: (*tl.SandboxEvent)(nil), callback: "OnSandboxEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.SandboxEvent](t, ev)
		assert.Equal(t, tl.EventTypeSandboxSuspended, e.Type())
		assert.Equal(t, int64(1), e.SourceOrdinal)
		assert.Equal(t, tl.SandboxStatusSuspended, e.Data.Sandbox.Status)
		assert.Equal(t, strRef("snap_01k0suspend"), e.Data.Sandbox.SnapshotID)
		assert.Equal(t, 1000, e.OccurredAt.Nanosecond())
	}},
	{file: "tensorlake.sandbox.resumed.json", want: (*tl.SandboxEvent)(nil), callback: "OnSandboxEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.SandboxEvent](t, ev)
		assert.Equal(t, tl.EventTypeSandboxResumed, e.Type())
		assert.Equal(t, int64(2), e.Data.Sandbox.GenerationID)
		assert.Equal(t, tl.SandboxStatusPending, e.Data.Sandbox.Status, "a resumed sandbox is pending at first (Tensorlake's docs)")
		require.NotNil(t, e.Data.PreviousStatus)
		assert.Equal(t, tl.SandboxStatusSuspended, *e.Data.PreviousStatus)
	}},
	{file: "tensorlake.sandbox.terminated.json", want: (*tl.SandboxEvent)(nil), callback: "OnSandboxEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.SandboxEvent](t, ev)
		assert.Equal(t, tl.EventTypeSandboxTerminated, e.Type())
		assert.Equal(t, int64(2), e.SourceOrdinal)
		require.NotNil(t, e.Data.Sandbox.Outcome)
		assert.Equal(t, tl.SandboxOutcomeSuccess, *e.Data.Sandbox.Outcome)
		require.NotNil(t, e.Data.Sandbox.OutcomeReason)
		assert.Equal(t, tl.SandboxOutcomeReasonUserTerminated, *e.Data.Sandbox.OutcomeReason)
		assert.Equal(t, 123456789, e.OccurredAt.Nanosecond())
	}},
	{file: "tensorlake.sandbox.failed.json", want: (*tl.SandboxEvent)(nil), callback: "OnSandboxEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.SandboxEvent](t, ev)
		assert.Equal(t, tl.EventTypeSandboxFailed, e.Type())
		assert.Equal(t, tl.Revision("81247"), e.SourceRevision)
		s := e.Data.Sandbox
		assert.Equal(t, strRef("build-runner"), s.Name)
		assert.Equal(t, tl.SandboxTypeNamed, s.Type)
		assert.Equal(t, strRef("tensorlake/default"), s.Image)
		assert.Equal(t, tl.SandboxStatusTerminated, s.Status)
		require.NotNil(t, s.Outcome)
		assert.Equal(t, tl.SandboxOutcomeFailure, *s.Outcome)
		require.NotNil(t, s.OutcomeReason)
		assert.Equal(t, tl.SandboxOutcomeReasonOutOfMemory, *s.OutcomeReason)
		assert.Nil(t, s.SnapshotID)
		assert.True(t, utcAt(2026, 7, 24, 20, 10, 0, 0).Equal(s.CreatedAt), s.CreatedAt)
	}},
	{file: "sandbox_new_type.json", want: (*tl.SandboxEvent)(nil), callback: "OnSandboxEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.SandboxEvent](t, ev)
		assert.Equal(t, tl.EventType("tensorlake.sandbox.snapshotted"), e.Type())
		assert.False(t, slices.Contains(tl.EventTypes(), e.Type()))
		assert.Equal(t, strRef("snap_new"), e.Data.Sandbox.SnapshotID)
	}},
	{file: "tensorlake.application.created.json", want: (*tl.ApplicationEvent)(nil), callback: "OnApplicationEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.ApplicationEvent](t, ev)
		assert.Equal(t, tl.EventTypeApplicationCreated, e.Type())
		assert.Equal(t, "invoice-extractor", e.Data.Application.Name)
		assert.Equal(t, "v1", e.Data.Application.Version)
		assert.Equal(t, tl.ApplicationStateActive, e.Data.Application.State)
		assert.Equal(t, 42_000_000, e.OccurredAt.Nanosecond())
	}},
	{file: "tensorlake.application.updated.json", want: (*tl.ApplicationEvent)(nil), callback: "OnApplicationEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.ApplicationEvent](t, ev)
		assert.Equal(t, tl.EventTypeApplicationUpdated, e.Type())
		assert.Equal(t, strRef("v1"), e.Data.PreviousVersion)
		require.NotNil(t, e.Data.PreviousState)
		assert.Equal(t, tl.ApplicationStateActive, *e.Data.PreviousState)
		assert.Equal(t, tl.ApplicationStateDisabled, e.Data.Application.State)
		assert.Equal(t, strRef("quota exceeded"), e.Data.Application.DisabledReason)
	}},
	{file: "tensorlake.application.deleted.json", want: (*tl.ApplicationEvent)(nil), callback: "OnApplicationEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.ApplicationEvent](t, ev)
		assert.Equal(t, tl.EventTypeApplicationDeleted, e.Type())
		assert.Equal(t, tl.Revision("3"), e.SourceRevision)
		assert.Equal(t, strRef("deleted by user"), e.Data.Application.DisabledReason)
	}},
	{file: "tensorlake.application.request.created.json", want: (*tl.RequestEvent)(nil), callback: "OnRequestEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.RequestEvent](t, ev)
		assert.Equal(t, tl.EventTypeRequestCreated, e.Type())
		assert.Equal(t, tl.Revision("340282366920938463463374607431768211457"), e.SourceRevision)
		assert.Equal(t, tl.ApplicationRef{Name: "invoice-extractor", Version: "v2"}, e.Data.Application)
		assert.Equal(t, "req_01k0abc", e.Data.Request.ID)
		assert.Equal(t, tl.RequestStatusCreated, e.Data.Request.Status)
		assert.Nil(t, e.Data.Request.FailureReason)
		assert.Nil(t, e.Data.Request.FinishedAt)
	}},
	{file: "tensorlake.application.request.completed.json", want: (*tl.RequestEvent)(nil), callback: "OnRequestEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.RequestEvent](t, ev)
		assert.Equal(t, tl.EventTypeRequestCompleted, e.Type())
		assert.Equal(t, int64(1), e.SourceOrdinal)
		assert.Equal(t, tl.RequestStatusCompleted, e.Data.Request.Status)
		require.NotNil(t, e.Data.Request.FinishedAt)
		assert.True(t, utcAt(2026, 7, 24, 21, 15, 42, 317_000_000).Equal(*e.Data.Request.FinishedAt))
	}},
	{file: "tensorlake.application.request.failed.json", want: (*tl.RequestEvent)(nil), callback: "OnRequestEvent", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.RequestEvent](t, ev)
		assert.Equal(t, tl.EventTypeRequestFailed, e.Type())
		assert.Equal(t, tl.Revision("18446744073709551617"), e.SourceRevision)
		assert.Equal(t, tl.RequestStatusFailed, e.Data.Request.Status)
		require.NotNil(t, e.Data.Request.FailureReason)
		assert.Equal(t, tl.FailureReasonFunctionTimeout, *e.Data.Request.FailureReason)
	}},
	{file: "unknown_event_type.json", want: (*tl.UnknownEvent)(nil), callback: "OnUnknown", check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.UnknownEvent](t, ev)
		assert.Equal(t, tl.EventType("tensorlake.project.renamed"), e.Type())
		assert.Equal(t, "evt_019f95fb-7f33-7000-8000-00000000000d", e.EventID)
		assert.Equal(t, tl.Revision("5"), e.SourceRevision)
	}},
	{file: "lifecycle_bad_version.json", want: (*tl.UnknownEvent)(nil), callback: "OnUnknown", breaking: true, check: func(t *testing.T, ev tl.Event) {
		e := eventAs[*tl.UnknownEvent](t, ev)
		assert.Equal(t, tl.EventTypeSandboxFailed, e.Type())
		assert.Equal(t, "evt_019f95fb-7f33-7000-8000-00000000000e", e.EventID)
		assert.Equal(t, 0, e.EventVersion, "a version that does not decode stays zero")
		assert.Equal(t, []tl.Drift{{EventType: tl.EventTypeSandboxFailed, Pointer: "/event_version", Kind: tl.DriftWrongKind}}, e.Drift)
	}},
}

func fixtureBytes(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(fixtureFile(name))
	require.NoError(t, err)
	return b
}

func TestFixtureTableIsComplete(t *testing.T) {
	// Every testdata fixture needs a row; samples may have one (each sample
	// is also checked against the event table by tlwebhooktest's tests).
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	var onDisk, inTable []string
	for _, f := range files {
		onDisk = append(onDisk, filepath.Base(f))
	}
	for _, c := range fixtureCases {
		inTable = append(inTable, c.file)
	}
	for _, c := range fixtureCases {
		if !fileExists(fixtureFile(c.file)) {
			t.Errorf("fixtureCases names %s, which is neither a sample nor in testdata", c.file)
		}
	}
	for _, f := range onDisk {
		assert.Contains(t, inTable, f, "every testdata/*.json file needs a row in fixtureCases")
	}
}

func TestParseEventFixtures(t *testing.T) {
	for _, c := range fixtureCases {
		t.Run(strings.TrimSuffix(c.file, ".json"), func(t *testing.T) {
			payload := fixtureBytes(t, c.file)
			ev, err := tl.ParseEvent(payload)
			if c.breaking {
				require.ErrorIs(t, err, tl.ErrSchemaDrift)
			} else {
				require.NoError(t, err)
			}
			require.IsType(t, c.want, ev)
			c.check(t, ev)
			assertMarshalsBack(t, c, ev, payload)
		})
	}
}

// assertMarshalsBack checks json.Marshal(ev) against the payload it was
// decoded from: semantically equal, or for lossy fixtures equal on every
// modelled field.
func assertMarshalsBack(t *testing.T, c fixtureCase, ev tl.Event, payload []byte) {
	t.Helper()
	out, err := json.Marshal(ev)
	require.NoError(t, err)
	if c.lossy() {
		assertModelledRoundTrip(t, ev, payload, out, c.dropped, c.zeroFilled)
		return
	}
	assert.Empty(t, jsonDiff("", jsonTree(t, payload), jsonTree(t, out)),
		"marshalled event differs from fixture\nfixture: %s\nmarshalled: %s", payload, out)
}

// jsonTree decodes b into maps, slices and json.Number values.
func jsonTree(t testing.TB, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	_, err := dec.Token()
	require.ErrorIs(t, err, io.EOF, "trailing data after JSON value")
	return v
}

// jsonDiff lists the differences between two decoded JSON trees. Numbers
// compare by value (2 equals 2.0), and two strings that are both RFC 3339
// times compare as instants with equal UTC offsets, since time.Time does not
// keep trailing zeros of a fraction ("03.250Z" is "03.25Z"). Everything else
// must be identical.
func jsonDiff(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want object, got %T", jsonPathOrRoot(path), got)}
		}
		var diffs []string
		for _, k := range jsonSortedKeys(w) {
			gv, ok := g[k]
			if !ok {
				diffs = append(diffs, fmt.Sprintf("%s: missing", jsonPath(path, k)))
				continue
			}
			diffs = append(diffs, jsonDiff(jsonPath(path, k), w[k], gv)...)
		}
		for _, k := range jsonSortedKeys(g) {
			if _, ok := w[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: unexpected", jsonPath(path, k)))
			}
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: want array of %d, got %v", jsonPathOrRoot(path), len(w), got)}
		}
		var diffs []string
		for i := range w {
			diffs = append(diffs, jsonDiff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return diffs
	case json.Number:
		g, ok := got.(json.Number)
		if ok && numbersEqual(w, g) {
			return nil
		}
	case string:
		g, ok := got.(string)
		if ok && (w == g || sameTime(w, g)) {
			return nil
		}
	default: // bool, nil
		if want == got {
			return nil
		}
	}
	return []string{fmt.Sprintf("%s: want %#v, got %#v", jsonPathOrRoot(path), want, got)}
}

func numbersEqual(a, b json.Number) bool {
	ra, ok1 := new(big.Rat).SetString(a.String())
	rb, ok2 := new(big.Rat).SetString(b.String())
	return ok1 && ok2 && ra.Cmp(rb) == 0
}

func sameTime(a, b string) bool {
	ta, err1 := time.Parse(time.RFC3339Nano, a)
	tb, err2 := time.Parse(time.RFC3339Nano, b)
	if err1 != nil || err2 != nil || !ta.Equal(tb) {
		return false
	}
	_, oa := ta.Zone()
	_, ob := tb.Zone()
	return oa == ob
}

func jsonPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func jsonPathOrRoot(path string) string {
	if path == "" {
		return "(root)"
	}
	return path
}

func jsonSortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// leaves flattens a JSON tree into path -> value, descending into objects
// only; stop reports paths to keep whole (a map-typed field of the model).
func jsonLeaves(path string, v any, stop map[string]bool, out map[string]any) map[string]any {
	if out == nil {
		out = map[string]any{}
	}
	m, ok := v.(map[string]any)
	if !ok || stop[path] || (len(m) == 0 && path != "") {
		out[path] = v
		return out
	}
	for k, child := range m {
		jsonLeaves(jsonPath(path, k), child, stop, out)
	}
	return out
}

// lookup returns the value at a dotted path of a JSON tree.
func jsonLookup(v any, path string) (any, bool) {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// modelledPaths returns the leaf paths of ev's type, found by marshalling
// its zero value, with each path's zero value.
func modelledPaths(t *testing.T, ev tl.Event) map[string]any {
	t.Helper()
	zero := reflect.New(reflect.TypeOf(ev).Elem()).Interface()
	b, err := json.Marshal(zero)
	require.NoError(t, err)
	return jsonLeaves("", jsonTree(t, b), nil, nil)
}

// assertModelledRoundTrip checks a marshalled event against its input when
// the input carries fields the type does not model:
//   - the output holds only paths the type models;
//   - every modelled path present in the input is in the output with an
//     equal value (jsonDiff);
//   - the output is a subset by path of the input, except exactly the
//     zeroFilled paths, which the input lacks and the output carries with
//     the type's zero value;
//   - the input paths missing from the output are exactly dropped.
func assertModelledRoundTrip(t *testing.T, ev tl.Event, input, out []byte, dropped, zeroFilled []string) {
	t.Helper()
	model := modelledPaths(t, ev)
	stop := map[string]bool{}
	for p := range model {
		stop[p] = true
	}
	in, got := jsonTree(t, input), jsonTree(t, out)
	outLeaves := jsonLeaves("", got, stop, nil)

	var added []string
	for p, v := range outLeaves {
		zero, modelled := model[p]
		if !assert.Truef(t, modelled, "output path %s is not a modelled field", p) {
			continue
		}
		iv, ok := jsonLookup(in, p)
		if !ok {
			added = append(added, p)
			assert.Emptyf(t, jsonDiff(p, zero, v), "%s is absent from the input but not zero in the output", p)
			continue
		}
		assert.Emptyf(t, jsonDiff(p, iv, v), "modelled field %s changed in the round trip", p)
	}
	for p := range model {
		if _, inInput := jsonLookup(in, p); inInput {
			_, inOutput := outLeaves[p]
			assert.Truef(t, inOutput, "modelled field %s present in input is missing from the output", p)
		}
	}
	assert.ElementsMatch(t, zeroFilled, added, "paths the output adds to the input")

	var lost []string
	for p := range jsonLeaves("", in, nil, nil) {
		if !coveredBy(p, outLeaves) {
			lost = append(lost, p)
		}
	}
	assert.ElementsMatch(t, dropped, lost, "input paths the output drops")
}

// coveredBy reports whether p or one of its prefixes is a key of m.
func coveredBy(p string, m map[string]any) bool {
	for {
		if _, ok := m[p]; ok {
			return true
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

func TestJobStatusMapping(t *testing.T) {
	tests := []struct {
		status string // raw JSON value of "status"
		want   tl.Event
	}{
		{`"pending"`, (*tl.JobCreated)(nil)},
		{`"failure"`, (*tl.JobFailed)(nil)},
		{`"successful"`, (*tl.JobCompleted)(nil)},
		{`"success"`, (*tl.JobCompleted)(nil)},
		{`"processing"`, (*tl.UnknownEvent)(nil)},
		{`"detecting_layout"`, (*tl.UnknownEvent)(nil)},
		{`"layout_detected"`, (*tl.UnknownEvent)(nil)},
		{`"extracting_data"`, (*tl.UnknownEvent)(nil)},
		{`"extracted_data"`, (*tl.UnknownEvent)(nil)},
		{`"formatting_output"`, (*tl.UnknownEvent)(nil)},
		{`"formatted_output"`, (*tl.UnknownEvent)(nil)},
		{`"Pending"`, (*tl.UnknownEvent)(nil)},
		{`"queued_for_the_future"`, (*tl.UnknownEvent)(nil)},
		{`""`, (*tl.UnknownEvent)(nil)},
		{`3`, (*tl.UnknownEvent)(nil)},
		{`null`, (*tl.UnknownEvent)(nil)},
		{`{"code":"pending"}`, (*tl.UnknownEvent)(nil)},
	}
	for _, tc := range tests {
		t.Run(tc.status, func(t *testing.T) {
			payload := []byte(`{"job_id":"parse_map","status":` + tc.status + `,"created_at":"2024-05-06T07:08:09Z"}`)
			ev, err := tl.ParseEvent(payload)
			require.NoError(t, err)
			require.IsType(t, tc.want, ev)
			switch e := ev.(type) {
			case *tl.UnknownEvent:
				assert.Equal(t, payload, []byte(e.Raw), "Raw is the input")
				assert.Equal(t, tl.EventType(""), e.Type())
				mj, err := e.MarshalJSON()
				require.NoError(t, err)
				assert.Equal(t, payload, mj, "MarshalJSON gives back the input bytes")
				out, err := json.Marshal(ev)
				require.NoError(t, err)
				assert.Equal(t, string(payload), string(out), "json.Marshal gives back the (compact) input")
			case *tl.JobCreated:
				assert.Equal(t, "parse_map", e.JobID)
			case *tl.JobFailed:
				assert.Equal(t, "parse_map", e.JobID)
			case *tl.JobCompleted:
				assert.Equal(t, "parse_map", e.JobID)
				var s string
				require.NoError(t, json.Unmarshal([]byte(tc.status), &s))
				assert.Equal(t, tl.JobStatus(s), e.Status)
			}
		})
	}
}

func TestUnknownEventKeepsExactBytes(t *testing.T) {
	// Whitespace, key order, escapes and number spellings all survive.
	payload := []byte(" {\n\t\"z\": 1.50e2, \"a\" : [true, null],\"s\":\"\\u00e9<&>\" }\n")
	ev, err := tl.ParseEvent(payload)
	require.NoError(t, err)
	u := eventAs[*tl.UnknownEvent](t, ev)
	mj, err := u.MarshalJSON()
	require.NoError(t, err)
	assert.Equal(t, payload, mj)

	// ParseEvent keeps its own copy: the caller may reuse the buffer.
	orig := bytes.Clone(payload)
	for i := range payload {
		payload[i] = ' '
	}
	assert.Equal(t, orig, []byte(u.Raw))

	// Marshalled as a field of another value, it is the same JSON.
	wrapped, err := json.Marshal(map[string]any{"ev": u})
	require.NoError(t, err)
	assert.Empty(t, jsonDiff("", map[string]any{"ev": jsonTree(t, orig)}, jsonTree(t, wrapped)))
}

func TestWorkflowHelpers(t *testing.T) {
	tests := []struct {
		name          string
		fnStatus      map[string]tl.FunctionStatus
		failed, ok    []string
		allSucceeded  bool
		fixtureSource string
	}{
		{
			name:          "fixture",
			fixtureSource: "workflow_completed_pretty.json",
			failed:        []string{"notify", "summarize"},
			ok:            []string{"classify", "extract"},
		},
		{
			name:         "all succeeded",
			fnStatus:     map[string]tl.FunctionStatus{"b": tl.FunctionStatusSuccess, "a": tl.FunctionStatusSuccess},
			ok:           []string{"a", "b"},
			allSucceeded: true,
		},
		{
			name:     "unknown status counts as failed",
			fnStatus: map[string]tl.FunctionStatus{"x": "skipped", "w": tl.FunctionStatusSuccess, "v": tl.FunctionStatusFailure},
			failed:   []string{"v", "x"},
			ok:       []string{"w"},
		},
		{name: "no functions", fnStatus: map[string]tl.FunctionStatus{}, allSucceeded: true},
		{name: "nil map", allSucceeded: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &tl.WorkflowCompleted{FnStatus: tc.fnStatus}
			if tc.fixtureSource != "" {
				ev, err := tl.ParseEvent(fixtureBytes(t, tc.fixtureSource))
				require.NoError(t, err)
				w = eventAs[*tl.WorkflowCompleted](t, ev)
			}
			assert.Equal(t, tc.failed, emptyToNil(w.Failed()))
			assert.Equal(t, tc.ok, emptyToNil(w.Succeeded()))
			assert.Equal(t, tc.allSucceeded, w.AllSucceeded())
		})
	}

	t.Run("random sets are partitioned and sorted", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 11))
		for range 50 {
			w := &tl.WorkflowCompleted{FnStatus: map[string]tl.FunctionStatus{}}
			var wantOK, wantFailed []string
			for i := range rng.IntN(40) {
				name := "fn_" + strconv.FormatUint(rng.Uint64(), 36) + "_" + strconv.Itoa(i)
				if rng.IntN(3) == 0 {
					w.FnStatus[name] = tl.FunctionStatusFailure
					wantFailed = append(wantFailed, name)
				} else {
					w.FnStatus[name] = tl.FunctionStatusSuccess
					wantOK = append(wantOK, name)
				}
			}
			sort.Strings(wantOK)
			sort.Strings(wantFailed)
			require.Equal(t, wantFailed, emptyToNil(w.Failed()))
			require.Equal(t, wantOK, emptyToNil(w.Succeeded()))
			require.Equal(t, len(wantFailed) == 0, w.AllSucceeded())
		}
	})
}

func emptyToNil(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestParseEventRejectsNonObjects(t *testing.T) {
	tests := map[string]string{
		"empty":            "",
		"whitespace":       " \t\r\n ",
		"array":            `[]`,
		"array of object":  `[{"status":"pending"}]`,
		"string":           `"x"`,
		"number":           `1`,
		"null":             `null`,
		"true":             `true`,
		"two objects":      `{} {}`,
		"trailing garbage": `{"a":1} x`,
		"truncated":        `{"job_id":"parse_1","status":"pend`,
		"unclosed":         `{"job_id":"parse_1"`,
		"missing value":    `{"a":}`,
		"single quotes":    `{'a':1}`,
		"lone brace":       `{`,
		"byte order mark":  "\ufeff{}",
	}
	for name, payload := range tests {
		t.Run(name, func(t *testing.T) {
			ev, err := tl.ParseEvent([]byte(payload))
			require.ErrorIs(t, err, tl.ErrInvalidPayload)
			assert.Nil(t, ev)
		})
	}
}

// wrongTypeCases are known events whose modelled fields have the wrong JSON
// type. Each carries the marker "leak" in its bad value, or a distinctive
// number, which the error must not repeat.
var wrongTypeCases = []struct {
	name    string
	payload string
	secret  string // payload content the error must not contain
}{
	{"job_id number", `{"job_id":918273645,"status":"pending","created_at":"2023-10-01T12:00:00Z"}`, "918273645"},
	{"job_id object", `{"job_id":{"leak":1},"status":"failure"}`, "leak"},
	{"pages_parsed string", `{"job_id":"p","status":"successful","usage":{"pages_parsed":"leak-12"}}`, "leak-12"},
	{"pages_parsed fraction", `{"job_id":"p","status":"successful","usage":{"pages_parsed":4242.4242}}`, "4242.4242"},
	{"pages_parsed overflow", `{"job_id":"p","status":"successful","usage":{"pages_parsed":98765432109876543210987}}`, "98765432109876543210987"},
	{"usage array", `{"job_id":"p","status":"success","usage":["leak"]}`, "leak"},
	{"created_at not RFC 3339", `{"job_id":"p","status":"pending","created_at":"leak 1 Oct 2023"}`, "leak 1 Oct"},
	{"created_at number", `{"job_id":"p","status":"pending","created_at":1696161600}`, "1696161600"},
	{"finished_at bad", `{"job_id":"p","status":"failure","finished_at":"2023-13-45Tleak"}`, "Tleak"},
	{"error number", `{"job_id":"p","status":"failure","error":31415926}`, "31415926"},
	{"fn_status array", `{"workflow_name":"w","invocation_id":"i","fn_status":["leak"]}`, "leak"},
	{"fn_status value number", `{"workflow_name":"w","invocation_id":"i","fn_status":{"leakfn":27182818}}`, "27182818"},
	{"workflow_name number", `{"workflow_name":5550123,"invocation_id":"i","fn_status":{}}`, "5550123"},
	{"sandbox cpus string", `{"event_id":"evt_1","event_type":"tensorlake.sandbox.failed","event_version":1,` +
		`"occurred_at":"2026-07-24T21:15:15.123Z","source_revision":"1","data":{"previous_status":"running",` +
		`"sandbox":{"id":"sb","resources":{"cpus":"leak-two","memory_mb":1}}}}`, "leak-two"},
	{"sandbox generation_id string", `{"event_type":"tensorlake.sandbox.created","event_version":1,` +
		`"data":{"sandbox":{"generation_id":"leak"}}}`, "leak"},
	{"sandbox data string", `{"event_type":"tensorlake.sandbox.running","event_version":1,"data":"leak"}`, "leak"},
	{"occurred_at bad", `{"event_type":"tensorlake.sandbox.running","event_version":1,"occurred_at":"leak"}`, "leak"},
	{"source_ordinal string", `{"event_type":"tensorlake.sandbox.running","event_version":1,"source_ordinal":"leak"}`, "leak"},
	{"source_revision negative", `{"event_type":"tensorlake.sandbox.running","event_version":1,"source_revision":-4711}`, "4711"},
	{"event_id number", `{"event_type":"tensorlake.application.created","event_version":1,"event_id":8675309}`, "8675309"},
	{"application state number", `{"event_type":"tensorlake.application.updated","event_version":1,` +
		`"data":{"application":{"name":"a","state":6021023}}}`, "6021023"},
	{"request finished_at number", `{"event_type":"tensorlake.application.request.completed","event_version":1,` +
		`"data":{"request":{"id":"r","finished_at":1234567}}}`, "1234567"},
	{"request failure_reason object", `{"event_type":"tensorlake.application.request.failed","event_version":1,` +
		`"data":{"request":{"failure_reason":{"leak":true}}}}`, "leak"},
}

// TestParseEventWrongTypesAreDrift: a modelled member of another JSON type
// is breaking drift, not a malformed payload: an UnknownEvent that keeps
// the payload, with an error wrapping ErrSchemaDrift. Neither the error nor
// the drift report repeats the bad value.
func TestParseEventWrongTypesAreDrift(t *testing.T) {
	for _, tc := range wrongTypeCases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := tl.ParseEvent([]byte(tc.payload))
			require.ErrorIs(t, err, tl.ErrSchemaDrift)
			assert.NotErrorIs(t, err, tl.ErrInvalidPayload)
			u := eventAs[*tl.UnknownEvent](t, ev)
			assert.Equal(t, tc.payload, string(u.Raw))
			require.NotEmpty(t, u.Drift)
			assert.True(t, u.Drift[0].Breaking() || len(u.Drift) > 1, "%v", u.Drift)
			assert.NotContains(t, err.Error(), tc.secret, "the error repeats payload content")
			assert.NotContains(t, fmt.Sprint(u.Drift), tc.secret, "the report repeats payload content")
		})
	}
}

// TestParseEventTimesRemarshal: a time that decodes must marshal again.
// Offsets of 24 hours or more are not RFC 3339 (time-hour is 00-23), and
// time.Time cannot marshal them.
func TestParseEventTimesRemarshal(t *testing.T) {
	for _, ts := range []string{
		"2023-10-01T12:00:00+24:00",
		"2023-10-01T12:00:00-24:00",
		"2023-10-01T12:00:00+23:60",
		"2023-10-01T12:00:00+23:59",
		"0000-01-01T00:30:00+01:00",
		"9999-12-31T23:59:59-23:59",
	} {
		t.Run(ts, func(t *testing.T) {
			payload := []byte(`{"job_id":"p","status":"pending","created_at":"` + ts + `"}`)
			ev, err := tl.ParseEvent(payload)
			if err != nil {
				require.ErrorIs(t, err, tl.ErrSchemaDrift)
				return
			}
			out, err := json.Marshal(ev)
			require.NoError(t, err, "decoded without error but does not marshal")
			assert.Empty(t, jsonDiff("", jsonTree(t, payload), jsonTree(t, out)))
		})
	}
}

// FuzzParseEvent checks that ParseEvent never panics, that its only errors
// are ErrInvalidPayload and ErrSchemaDrift (with an UnknownEvent), that whatever decodes marshals again, that an
// UnknownEvent keeps the payload, and that a typed event's marshalled form
// parses back to the same type and marshals identically.
func FuzzParseEvent(f *testing.F) {
	for _, file := range fixtureFiles(f) {
		b, err := os.ReadFile(fixtureFile(file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, tc := range wrongTypeCases {
		f.Add([]byte(tc.payload))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		in := bytes.Clone(payload)
		ev, err := tl.ParseEvent(payload)
		require.Equal(t, in, payload, "ParseEvent modified its input")
		if errors.Is(err, tl.ErrSchemaDrift) {
			u, ok := ev.(*tl.UnknownEvent)
			require.True(t, ok, "breaking drift returns an UnknownEvent, got %T", ev)
			require.Equal(t, payload, []byte(u.Raw))
			require.True(t, slices.ContainsFunc(u.Drift, tl.Drift.Breaking), "%v", u.Drift)
			return
		}
		if err != nil {
			require.ErrorIs(t, err, tl.ErrInvalidPayload)
			require.Nil(t, ev)
			return
		}
		require.NotNil(t, ev)
		out, err := json.Marshal(ev)
		require.NoError(t, err, "decoded event does not marshal")
		if u, ok := ev.(*tl.UnknownEvent); ok {
			require.Equal(t, payload, []byte(u.Raw))
			return
		}
		ev2, err := tl.ParseEvent(out)
		require.NoError(t, err, "marshalled event does not parse: %s", out)
		require.IsType(t, ev, ev2, "marshalled event parses to another type: %s", out)
		require.Equal(t, ev.Type(), ev2.Type())
		out2, err := json.Marshal(ev2)
		require.NoError(t, err)
		require.Equal(t, string(out), string(out2), "marshalling is not stable")
	})
}

// TestEventTypes checks the listed types are distinct, and that new or
// foreign types are not listed.
func TestEventTypes(t *testing.T) {
	types := tl.EventTypes()
	// The types of Tensorlake's documentation are all there; a type added
	// later must follow the wire format's naming.
	for _, want := range []tl.EventType{
		tl.EventTypeJobCreated, tl.EventTypeJobFailed, tl.EventTypeJobCompleted, tl.EventTypeWorkflowCompleted,
		tl.EventTypeSandboxCreated, tl.EventTypeSandboxRunning, tl.EventTypeSandboxSuspended, tl.EventTypeSandboxResumed,
		tl.EventTypeSandboxTerminated, tl.EventTypeSandboxFailed, tl.EventTypeApplicationCreated, tl.EventTypeApplicationUpdated,
		tl.EventTypeApplicationDeleted, tl.EventTypeRequestCreated, tl.EventTypeRequestCompleted, tl.EventTypeRequestFailed,
	} {
		assert.Contains(t, types, want)
	}
	for _, et := range types {
		assert.NotEqual(t, "OnUnknown", testutil.WantCallback(string(et)), "%s is not a Tensorlake type name", et)
	}
	seen := map[tl.EventType]bool{}
	for _, et := range types {
		assert.False(t, seen[et], "duplicate %s", et)
		seen[et] = true
	}
	assert.True(t, slices.Contains(types, tl.EventTypeWorkflowCompleted))
	types[0] = "mutated"
	assert.NotEqual(t, tl.EventType("mutated"), tl.EventTypes()[0], "EventTypes returns a copy")
	for _, et := range []tl.EventType{"", "tensorlake.sandbox.snapshotted", "tensorlake.project.renamed"} {
		assert.False(t, slices.Contains(tl.EventTypes(), et), et)
	}
}
