package tlwebhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// agree checks ParseEvent against oracleParse on one payload: both reject
// it as malformed (ErrInvalidPayload), or both find breaking drift
// (ErrSchemaDrift) and return equal UnknownEvents, or both decode it into
// deeply equal events that marshal equally. It reports whether they decoded
// it without error.
func agree(t testing.TB, payload []byte) bool {
	t.Helper()
	got, err := ParseEvent(payload)
	want, wantErr := oracleParse(payload)
	switch {
	case errors.Is(wantErr, ErrInvalidPayload):
		if err == nil {
			t.Errorf("ParseEvent(%q) = %s, the oracle rejects it: %v", payload, dump(got), wantErr)
		} else {
			assert.ErrorIs(t, err, ErrInvalidPayload)
		}
		return false
	case wantErr != nil:
		if !errors.Is(err, ErrSchemaDrift) {
			t.Errorf("ParseEvent(%q) = %s, %v; the oracle finds breaking drift: %v", payload, dump(got), err, wantErr)
			return false
		}
		u, ok := got.(*UnknownEvent)
		if !ok || !slices.ContainsFunc(u.Drift, Drift.Breaking) {
			t.Errorf("ParseEvent(%q) = %s with %v, want an UnknownEvent listing breaking drift", payload, dump(got), err)
			return false
		}
		c := *u
		c.Drift = nil
		got = &c
	case err != nil:
		t.Errorf("ParseEvent(%q): %v; the oracle decodes %s", payload, err, dump(want))
		return false
	}
	compactData(got)
	compactData(want)
	if !reflect.DeepEqual(want, got) {
		t.Errorf("ParseEvent and the oracle differ on %q:\ngot  %s\nwant %s", payload, dump(got), dump(want))
	}
	gj, err := json.Marshal(got)
	require.NoError(t, err)
	wj, err := json.Marshal(want)
	require.NoError(t, err)
	if !bytes.Equal(gj, wj) {
		t.Errorf("marshalled events differ on %q:\ngot  %s\nwant %s", payload, gj, wj)
	}
	return wantErr == nil
}

// compactData re-encodes an UnknownEvent's raw data member canonically:
// the oracle does not keep its whitespace and escapes when it rewrites a
// payload.
func compactData(ev Event) {
	if u, ok := ev.(*UnknownEvent); ok && u.Data != nil {
		dec := json.NewDecoder(bytes.NewReader(u.Data))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) == nil {
			u.Data, _ = json.Marshal(v)
		}
	}
}

func dump(ev Event) string {
	if ev == nil {
		return "<nil>"
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Sprintf("%T (marshal: %v)", ev, err)
	}
	return fmt.Sprintf("%T %s", ev, b)
}

// TestParseEventAgreesWithOracle checks every sample and fixture against the
// oracle.
func TestParseEventAgreesWithOracle(t *testing.T) {
	for _, path := range benchPayloads(t) {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			breaking := filepath.Base(path) == "lifecycle_bad_version.json"
			assert.Equal(t, !breaking, agree(t, readFixture(t, path)), "every fixture decodes, but the one with breaking drift")
		})
	}
}

// TestParseEventDecodes checks values ParseEvent produces against values
// written out by hand, on inputs that exercise its decoding rules.
func TestParseEventDecodes(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err)
		return tm
	}
	str := func(s string) *string { return &s }
	running := SandboxStatusRunning
	failure := SandboxOutcomeFailure
	timeout := FailureReasonFunctionTimeout
	finished := at("2026-07-24T21:31:00.5Z")
	cases := []struct {
		name    string
		payload string
		want    Event
	}{
		{"escapes in strings",
			`{"job_id":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00\u0000é文","status":"pend\u0069ng"}`,
			&JobCreated{JobID: "a\"b\\c/d\b\f\n\r\té😀\x00é文", Status: JobStatusPending}},
		{"nulls leave fields zero",
			`{"job_id":null,"status":"failure","error":null,"created_at":null,"finished_at":null}`,
			&JobFailed{Status: JobStatusFailure}},
		{"whitespace everywhere",
			" \r\n\t{ \"status\" :\t\"success\" , \"usage\" : { \"pages_parsed\" : -0 , \"ocr_input_tokens_used\" : 9223372036854775807 } } \n",
			&JobCompleted{Status: JobStatusSuccess, Usage: Usage{OCRInputTokensUsed: 1<<63 - 1}}},
		{"unknown fields of any shape are skipped",
			`{"x":[1,-2.5e-3,true,false,null,{"y":{"z":[]}}],"status":"successful","USAGE_X":{},"job_id":"j","usage":null}`,
			&JobCompleted{JobID: "j", Status: JobStatusSuccessful}},
		{"workflow map keeps null values and escaped keys",
			`{"workflow_name":"w","fn_status":{"a":"success","b":null,"c\u00e9":"odd"}}`,
			&WorkflowCompleted{WorkflowName: "w", FnStatus: map[string]FunctionStatus{"a": FunctionStatusSuccess, "b": "", "cé": "odd"}}},
		{"a member differing only in case is ignored, not matched",
			`{"status":"pending","Status":"failure","JOB_ID":"x","job_id":"j"}`,
			&JobCreated{JobID: "j", Status: JobStatusPending}},
		{"an escaped member name is the same name",
			`{"status":"pending","job\u005fid":"a"}`,
			&JobCreated{JobID: "a", Status: JobStatusPending}},
		{"empty workflow map is not nil",
			`{"invocation_id":"i","fn_status":{}}`,
			&WorkflowCompleted{InvocationID: "i", FnStatus: map[string]FunctionStatus{}}},
		{"workflow fields win over a job status",
			`{"status":"pending","workflow_name":"w","fn_status":null}`,
			&WorkflowCompleted{WorkflowName: "w"}},
		{"sandbox pointers and numbers",
			`{"event_type":"tensorlake.sandbox.failed","event_version":1,"source_revision":18446744073709551617,"source_ordinal":3,` +
				`"data":{"previous_status":"running","sandbox":{"name":"n","image":null,"outcome":"failure","outcome_reason":"brand_new",` +
				`"generation_id":2,"resources":{"cpus":1e1,"gpu_model":"a10","memory_mb":-1}}}}`,
			&SandboxEvent{
				Envelope: Envelope{EventType: EventTypeSandboxFailed, EventVersion: 1, SourceRevision: "18446744073709551617", SourceOrdinal: 3},
				Data: SandboxEventData{PreviousStatus: &running, Sandbox: Sandbox{
					Name: str("n"), Outcome: &failure, OutcomeReason: ptr(SandboxOutcomeReason("brand_new")), GenerationID: 2,
					Resources: Resources{CPUs: 10, GPUModel: str("a10"), MemoryMB: -1},
				}},
			}},
		{"new type of a known family, data null",
			`{"event_type":"tensorlake.sandbox.snapshotted","event_version":1,"data":null}`,
			&SandboxEvent{Envelope: Envelope{EventType: "tensorlake.sandbox.snapshotted", EventVersion: 1}}},
		{"request with pointer time",
			`{"event_type":"tensorlake.application.request.failed","occurred_at":"2026-07-24T21:31:00.501Z",` +
				`"data":{"request":{"failure_reason":"function_timeout","finished_at":"2026-07-24T21:31:00.5Z"},"application":{"name":"a","version":"v"}}}`,
			&RequestEvent{
				Envelope: Envelope{EventType: EventTypeRequestFailed, OccurredAt: at("2026-07-24T21:31:00.501Z")},
				Data: RequestEventData{Application: ApplicationRef{Name: "a", Version: "v"},
					Request: ApplicationRequest{FailureReason: &timeout, FinishedAt: &finished}},
			}},
		{"application event",
			`{"event_type":"tensorlake.application.updated","source_revision":"007","data":{"previous_version":"v1","previous_state":null,` +
				`"application":{"name":"x","state":"disabled","disabled_reason":"quota","created_at":"2026-07-20T08:00:00+02:00"}}}`,
			&ApplicationEvent{
				Envelope: Envelope{EventType: EventTypeApplicationUpdated, SourceRevision: "007"},
				Data: ApplicationEventData{PreviousVersion: str("v1"), Application: Application{
					Name: "x", State: ApplicationStateDisabled, DisabledReason: str("quota"), CreatedAt: at("2026-07-20T08:00:00+02:00"),
				}},
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseEvent([]byte(c.payload))
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
			assert.True(t, agree(t, []byte(c.payload)))
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestParseEventRejects lists inputs that are not one valid, unambiguous
// JSON object: each is an error wrapping ErrInvalidPayload, and the oracle
// agrees. (Known events with fields of the wrong type are breaking drift:
// see TestParseEventBreakingDrift.)
func TestParseEventRejects(t *testing.T) {
	cases := []struct{ name, payload string }{
		{"not an object", `["status"]`},
		{"empty", ``},
		{"trailing data", `{"status":"pending"} {}`},
		{"truncated", `{"status":"pending"`},
		{"trailing comma", `{"status":"pending",}`},
		{"duplicate field", `{"status":"pending","job_id":"a","job_id":"b"}`},
		{"duplicate field, one name escaped", `{"status":"pending","job_id":"a","job\u005fid":"b"}`},
		{"duplicate discriminator", `{"status":"pending","status":"failure"}`},
		{"duplicate in an unmodelled member", `{"status":"pending","x":{"y":1,"y":2}}`},
		{"duplicate key of the fn_status map", `{"workflow_name":"w","fn_status":{"a":"success","a":"failure"}}`},
		{"duplicate in an unknown event", `{"kind":"x","kind":"y"}`},
		{"duplicate nested field", `{"status":"successful","usage":{"pages_parsed":1,"pages_parsed":2}}`},
		{"lone surrogate", `{"status":"pending","job_id":"\ud800"}`},
		{"invalid UTF-8", "{\"status\":\"pending\",\"job_id\":\"\xff\"}"},
		{"invalid escape", `{"status":"pending","job_id":"\'"}`},
		{"control character", "{\"status\":\"pending\",\"job_id\":\"\t\"}"},
		{"invalid UTF-8 in a name", "{\"status\":\"pending\",\"\xff\":1}"},
		{"invalid UTF-8 in an unknown event", "{\"x\":\"\xc3\"}"},
		{"lone low surrogate", `{"x":"\udc00"}`},
		{"bad literal", `{"status":"pending","x":nul}`},
		{"leading zero", `{"status":"pending","x":01}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := ParseEvent([]byte(c.payload))
			assert.ErrorIs(t, err, ErrInvalidPayload, "decoded into %s", dump(ev))
			assert.Nil(t, ev)
			assert.False(t, agree(t, []byte(c.payload)))
		})
	}
}

// TestParseEventAllocs checks the allocation budget of ParseEvent on the
// payloads Tensorlake sends most: the event and what its fields need.
func TestParseEventAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector randomises sync.Pool; .ci/run checks allocations without -race")
	}
	for _, c := range []struct {
		path string
		max  float64
	}{
		{samplePath(EventTypeJobCompleted), 3},
		{samplePath(EventTypeSandboxFailed), 10},
		{samplePath(EventTypeRequestCompleted), 10},
		{samplePath(EventTypeApplicationUpdated), 10},
		// Unmodelled members cost the refused strict decoding (its error) too.
		{"bench/testdata/job_completed_2kib.json", 6},
	} {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			payload := readFixture(t, c.path)
			allocs := testing.AllocsPerRun(50, func() {
				if _, err := ParseEvent(payload); err != nil {
					t.Fatal(err)
				}
			})
			assert.LessOrEqual(t, allocs, c.max)
		})
	}
}

// TestParseEventMutations runs agree on many variants of every fixture:
// each member's value replaced by values of other types and forms, keys
// changed in case, escaped or folded, members duplicated or removed,
// discriminating fields added, and the payload truncated.
// Fixtures with the same members as an earlier one (the sandbox events,
// for example) add nothing and are skipped.
func TestParseEventMutations(t *testing.T) {
	shapes := map[string]bool{}
	for _, path := range benchPayloads(t) {
		payload := readFixture(t, path)
		shape := parseTree(t, payload).shape("")
		if shapes[shape] {
			continue
		}
		shapes[shape] = true
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			variants := mutations(t, payload)
			decoded := 0
			for _, v := range variants {
				if agree(t, v) {
					decoded++
				}
				if t.Failed() {
					return // the first payload that disagrees says enough
				}
			}
			t.Logf("%d variants, %d decoded, the others rejected by both", len(variants), decoded)
		})
	}
}

// replacementValues are the values mutations put in place of each member's.
var replacementValues = []string{
	`null`, `true`, `false`, `0`, `-0`, `7`, `-1`, `1.5`, `1e2`, `-2.5E-3`,
	`9223372036854775807`, `9223372036854775808`, `-9223372036854775808`, `-9223372036854775809`,
	`18446744073709551617`, `1e400`,
	`""`, `"x"`, `"\u00e9t\u00e9 \ud83d\ude00"`, `"\ud83d"`, `"a\"b\\c\/\b\f\n\r\t"`, "\"\xff\xfe\"", `"é文"`,
	`"2026-07-24T21:15:15.123Z"`, `"2026-07-24T21:15:15+02:00"`, `"2026-07-24T21:15:15+24:00"`, `"2026-07-24T21:15:15-23:59"`,
	`"2026-07-24 21:15:15Z"`, `"2026-07-24T21:15:15\u005a"`,
	`"81247"`, `"pending"`, `"failure"`, `"successful"`, `"success"`, `"processing"`, `"running"`,
	`"tensorlake.sandbox.failed"`, `"tensorlake.application.request.x"`, `"tensorlake.application.created"`, `"tensorlake.other"`,
	`{}`, `[]`, `{"a":[1,{"b":null}],"c":"d"}`, `[null,{"x":{}}]`,
}

// mutations returns variants of a JSON payload.
func mutations(t testing.TB, payload []byte) [][]byte {
	root := parseTree(t, payload)
	var out [][]byte
	emit := func() { out = append(out, root.encode()) }
	var members func(n *jnode)
	members = func(n *jnode) {
		if n.kind != '{' {
			// Arrays only appear in fields the events do not model:
			// replacing them whole (below) covers skipping them.
			return
		}
		for _, kid := range n.vals {
			members(kid)
		}
		for i := range n.keys {
			key, val := n.keys[i], n.vals[i]
			for _, r := range replacementValues {
				n.vals[i] = &jnode{raw: r}
				emit()
			}
			n.vals[i] = val
			var name string
			_ = json.Unmarshal([]byte(key), &name)
			for _, k := range keyVariants(name) {
				n.keys[i] = k
				emit()
			}
			n.keys[i] = key
			for _, dup := range []*jnode{val, {raw: `null`}, {raw: `"x"`}} {
				n.keys = append(n.keys, key)
				n.vals = append(n.vals, dup)
				emit()
				n.keys, n.vals = n.keys[:len(n.keys)-1], n.vals[:len(n.vals)-1]
			}
			keys, vals := n.keys, n.vals
			n.keys = append(append([]string{}, keys[:i]...), keys[i+1:]...)
			n.vals = append(append([]*jnode{}, vals[:i]...), vals[i+1:]...)
			emit()
			n.keys, n.vals = keys, vals
		}
	}
	members(root)
	// Discriminating fields added to the top level.
	if root.kind == '{' {
		for _, name := range []string{"event_type", "status", "workflow_name", "invocation_id", "fn_status", "data"} {
			for _, v := range []string{`null`, `"pending"`, `"tensorlake.sandbox.x"`, `{}`} {
				root.keys = append(root.keys, `"`+name+`"`)
				root.vals = append(root.vals, &jnode{raw: v})
				emit()
				root.keys, root.vals = root.keys[:len(root.keys)-1], root.vals[:len(root.vals)-1]
			}
		}
	}
	// Truncations, and bytes around the payload.
	for i := 0; i < len(payload); i += 7 {
		out = append(out, payload[:i])
	}
	for _, affix := range []string{" ", "x", "{}", "\x00", ","} {
		out = append(out, append(bytes.Clone(payload), affix...), append([]byte(affix), payload...))
	}
	return out
}

// keyVariants returns forms of a key that encoding/json may match to the
// same field, or to none.
func keyVariants(name string) []string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	v := []string{q(strings.ToUpper(name)), q(name + "_"), `"` + `\u00` + fmt.Sprintf("%x", name[0]) + name[1:] + `"`}
	if name != "" {
		v = append(v, q(strings.ToUpper(name[:1])+name[1:]))
	}
	if strings.Contains(name, "s") {
		v = append(v, q(strings.Replace(name, "s", "ſ", 1)))
	}
	if strings.Contains(name, "k") {
		v = append(v, q(strings.Replace(name, "k", "\u212a", 1)))
	}
	return v
}

// jnode is a JSON value that keeps the order of object members and allows
// duplicates, for building variants of a payload.
type jnode struct {
	kind byte     // '{', '[', or 0 for a scalar
	keys []string // quoted keys of an object
	vals []*jnode // members' values, or elements
	raw  string   // a scalar's JSON text
}

func parseTree(t testing.TB, payload []byte) *jnode {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var value func() *jnode
	value = func() *jnode {
		tok, err := dec.Token()
		require.NoError(t, err)
		switch tok := tok.(type) {
		case json.Delim:
			n := &jnode{kind: byte(tok)}
			for dec.More() {
				if n.kind == '{' {
					k, err := dec.Token()
					require.NoError(t, err)
					kb, _ := json.Marshal(k)
					n.keys = append(n.keys, string(kb))
				}
				n.vals = append(n.vals, value())
			}
			_, err := dec.Token() // closing delimiter
			require.NoError(t, err)
			return n
		default:
			b, err := json.Marshal(tok)
			require.NoError(t, err)
			return &jnode{raw: string(b)}
		}
	}
	root := value()
	_, err := dec.Token()
	require.ErrorIs(t, err, io.EOF)
	return root
}

// shape describes the members of n, ignoring their scalar values.
func (n *jnode) shape(path string) string {
	var b strings.Builder
	for i, v := range n.vals {
		p := path + "[]"
		if n.kind == '{' {
			p = path + "." + n.keys[i]
		}
		b.WriteString(p + " ")
		b.WriteString(v.shape(p))
	}
	return b.String()
}

func (n *jnode) encode() []byte {
	var b bytes.Buffer
	n.write(&b)
	return b.Bytes()
}

func (n *jnode) write(b *bytes.Buffer) {
	switch n.kind {
	case '{', '[':
		b.WriteByte(n.kind)
		for i, v := range n.vals {
			if i > 0 {
				b.WriteByte(',')
			}
			if n.kind == '{' {
				b.WriteString(n.keys[i])
				b.WriteByte(':')
			}
			v.write(b)
		}
		if n.kind == '{' {
			b.WriteByte('}')
		} else {
			b.WriteByte(']')
		}
	default:
		b.WriteString(n.raw)
	}
}

// FuzzParseOracle checks, for any input, that ParseEvent and the oracle
// agree: both reject it, or both decode it to the same event.
func FuzzParseOracle(f *testing.F) {
	for _, path := range benchPayloads(f) {
		payload := readFixture(f, path)
		f.Add(payload)
	}
	for _, s := range []string{
		`{"status":"pending","Status":"failure"}`,
		`{"job_id":"\ud83d\ude00","status":"pend\u0069ng"}`,
		`{"workflow_name":"w","fn_status":{"a":"success","a":null}}`,
		`{"event_type":"tensorlake.sandbox.x","data":{"sandbox":{"resources":{"cpus":1e1}}}}`,
		`{"status":"failure","created_at":"2023-10-01T12:00:00+23:59","finished_at":"2023-10-01T12:00:00+24:00"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		agree(t, payload)
	})
}

// TestEventsDoNotAliasThePayload decodes every fixture, overwrites the
// payload's bytes, and checks that the event is unchanged: the Handler
// returns body buffers to a pool as soon as the event is decoded, so no
// decoded event may refer to them.
func TestEventsDoNotAliasThePayload(t *testing.T) {
	for _, path := range benchPayloads(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			clean := readFixture(t, path)
			want, err := ParseEvent(bytes.Clone(clean))
			if err != nil {
				require.ErrorIs(t, err, ErrSchemaDrift)
			}
			buf := bytes.Clone(clean)
			got, err2 := ParseEvent(buf)
			require.Equal(t, err, err2)
			for i := range buf {
				buf[i] = 'x'
			}
			assert.Equal(t, want, got, "the event changed when the payload's buffer was overwritten")
		})
	}
}

// TestDecodeErrorsRedactMapKeys checks that a map key, which is payload
// content, never appears in a decode error.
func TestDecodeErrorsRedactMapKeys(t *testing.T) {
	ev, err := ParseEvent([]byte(`{"workflow_name":"w","fn_status":{"customer-secret-123":5}}`))
	require.ErrorIs(t, err, ErrSchemaDrift)
	assert.NotContains(t, err.Error(), "customer-secret-123")
	assert.Contains(t, err.Error(), "/fn_status/*")
	assert.Equal(t, []Drift{{EventType: EventTypeWorkflowCompleted, Pointer: "/fn_status/*", Kind: DriftWrongKind}}, ev.(*UnknownEvent).Drift)
	drift, err := CheckDrift([]byte(`{"workflow_name":"w","fn_status":{"customer-secret-123":"skipped"}}`))
	require.NoError(t, err)
	assert.Equal(t, []Drift{{EventType: EventTypeWorkflowCompleted, Pointer: "/fn_status/*", Kind: DriftNewValue, Value: "skipped"}}, drift)
	_, err = ParseEvent([]byte(`{"status":"successful","usage":{"pages_parsed":"x"}}`))
	assert.Contains(t, err.Error(), "/usage/pages_parsed", "struct field names are kept")
}
