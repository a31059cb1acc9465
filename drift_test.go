package tlwebhook_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	tl "github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/internal/testutil"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// sandboxFailed returns the sandbox.failed sample with each pair of
// replacements applied once (each old string must be present).
func sandboxFailed(t testing.TB, oldNew ...string) []byte {
	t.Helper()
	return replaceOnce(t, tlwebhooktest.Sample(tl.EventTypeSandboxFailed), oldNew...)
}

func replaceOnce(t testing.TB, payload []byte, oldNew ...string) []byte {
	t.Helper()
	s := string(payload)
	for i := 0; i < len(oldNew); i += 2 {
		require.Contains(t, s, oldNew[i])
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	return []byte(s)
}

const failed = tl.EventTypeSandboxFailed

// TestCheckDrift lists each kind of drift on mutations of the samples: the
// report CheckDrift returns, and what ParseEvent makes of the payload
// (additive: the typed event, no error; breaking: an UnknownEvent listing
// the drift, with an error wrapping ErrSchemaDrift).
func TestCheckDrift(t *testing.T) {
	long := strings.Repeat("é", 40) // 80 bytes
	cases := []struct {
		name    string
		payload []byte
		want    []tl.Drift
	}{
		{"exact sample", sandboxFailed(t), nil},
		{"new top-level member", sandboxFailed(t, `"project_id"`, `"trace_id": "t", "project_id"`),
			[]tl.Drift{{EventType: failed, Pointer: "/trace_id", Kind: tl.DriftNewMember}}},
		{"new nested member", sandboxFailed(t, `"gpu_model": null`, `"gpu_model": null, "gpu_memory_mb": {"a": [1]}`),
			[]tl.Drift{{EventType: failed, Pointer: "/data/sandbox/resources/gpu_memory_mb", Kind: tl.DriftNewMember}}},
		{"new member with escapes in its name", sandboxFailed(t, `"gpu_model": null`, `"gpu_model": null, "a/b~c\u005fd": 1`),
			[]tl.Drift{{EventType: failed, Pointer: "/data/sandbox/resources/a~1b~0c_d", Kind: tl.DriftNewMember}}},
		{"new enumeration value", sandboxFailed(t, `"out_of_memory"`, `"cosmic_rays"`),
			[]tl.Drift{{EventType: failed, Pointer: "/data/sandbox/outcome_reason", Kind: tl.DriftNewValue, Value: "cosmic_rays"}}},
		{"new enumeration value, cut to 64 bytes", sandboxFailed(t, `"previous_status": "running"`, `"previous_status": "`+long+`"`),
			[]tl.Drift{{EventType: failed, Pointer: "/data/previous_status", Kind: tl.DriftNewValue, Value: strings.Repeat("é", 32)}}},
		{"new type of a known family", sandboxFailed(t, `"tensorlake.sandbox.failed"`, `"tensorlake.sandbox.snapshotted"`),
			[]tl.Drift{{EventType: "tensorlake.sandbox.snapshotted", Pointer: "/event_type", Kind: tl.DriftNewType}}},
		{"number as a string", sandboxFailed(t, `"cpus": 2`, `"cpus": "2"`),
			[]tl.Drift{{EventType: failed, Pointer: "/data/sandbox/resources/cpus", Kind: tl.DriftWrongKind}}},
		{"integer as a string", sandboxFailed(t, `"generation_id": 2`, `"generation_id": "2"`),
			[]tl.Drift{{EventType: failed, Pointer: "/data/sandbox/generation_id", Kind: tl.DriftWrongKind}}},
		{"object for a string", sandboxFailed(t, `"image": "tensorlake/default"`, `"image": {"name": "x"}`),
			[]tl.Drift{{EventType: failed, Pointer: "/data/sandbox/image", Kind: tl.DriftWrongKind}}},
		{"fraction for an integer", sandboxFailed(t, `"generation_id": 2`, `"generation_id": 2.5`),
			[]tl.Drift{{EventType: failed, Pointer: "/data/sandbox/generation_id", Kind: tl.DriftBadNumber}}},
		{"integer overflow", sandboxFailed(t, `"memory_mb": 4096`, `"memory_mb": 18446744073709551616`),
			[]tl.Drift{{EventType: failed, Pointer: "/data/sandbox/resources/memory_mb", Kind: tl.DriftBadNumber}}},
		{"time as epoch seconds", sandboxFailed(t, `"created_at": "2026-07-24T20:10:00Z"`, `"created_at": 1785000000`),
			[]tl.Drift{{EventType: failed, Pointer: "/data/sandbox/created_at", Kind: tl.DriftBadTime}}},
		{"time without a zone", sandboxFailed(t, `"2026-07-24T21:15:15.123Z"`, `"2026-07-24T21:15:15.123"`),
			[]tl.Drift{{EventType: failed, Pointer: "/occurred_at", Kind: tl.DriftBadTime}}},
		{"event_version above the highest modelled", sandboxFailed(t, `"event_version": 1`, `"event_version": 2`),
			[]tl.Drift{{EventType: failed, Pointer: "/event_version", Kind: tl.DriftNewVersion}}},
		{"additive and breaking together", sandboxFailed(t, `"cpus": 2`, `"cpus": "2", "tpus": 1`, `"out_of_memory"`, `"cosmic_rays"`),
			[]tl.Drift{
				{EventType: failed, Pointer: "/data/sandbox/outcome_reason", Kind: tl.DriftNewValue, Value: "cosmic_rays"},
				{EventType: failed, Pointer: "/data/sandbox/resources/cpus", Kind: tl.DriftWrongKind},
				{EventType: failed, Pointer: "/data/sandbox/resources/tpus", Kind: tl.DriftNewMember},
			}},
		{"job payload, older member", replaceOnce(t, tlwebhooktest.Sample(tl.EventTypeJobCompleted), `"status"`, `"dataset": null, "status"`),
			[]tl.Drift{{EventType: tl.EventTypeJobCompleted, Pointer: "/dataset", Kind: tl.DriftNewMember}}},
		{"job payload, usage as a string", replaceOnce(t, tlwebhooktest.Sample(tl.EventTypeJobCompleted), `"pages_parsed": 10`, `"pages_parsed": "10"`),
			[]tl.Drift{{EventType: tl.EventTypeJobCompleted, Pointer: "/usage/pages_parsed", Kind: tl.DriftWrongKind}}},
		{"workflow payload, new function status", replaceOnce(t, tlwebhooktest.Sample(tl.EventTypeWorkflowCompleted), `"failure"`, `"skipped"`),
			[]tl.Drift{{EventType: tl.EventTypeWorkflowCompleted, Pointer: "/fn_status/*", Kind: tl.DriftNewValue, Value: "skipped"}}},
		{"null for a modelled member", sandboxFailed(t, `"cpus": 2`, `"cpus": null`), nil},
		{"another family is no drift", sandboxFailed(t, `"tensorlake.sandbox.failed"`, `"tensorlake.project.renamed"`), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			drift, err := tl.CheckDrift(c.payload)
			require.NoError(t, err)
			assert.Equal(t, c.want, drift)

			ev, err := tl.ParseEvent(c.payload)
			breaking := false
			for _, d := range c.want {
				breaking = breaking || d.Breaking()
			}
			if !breaking {
				require.NoError(t, err)
				if len(c.want) > 0 {
					assert.NotEqual(t, "*tlwebhook.UnknownEvent", fmt.Sprintf("%T", ev), "additive drift decodes")
				}
				return
			}
			require.ErrorIs(t, err, tl.ErrSchemaDrift)
			assert.NotErrorIs(t, err, tl.ErrInvalidPayload)
			u, ok := ev.(*tl.UnknownEvent)
			require.True(t, ok, "got %T", ev)
			assert.Equal(t, c.want, u.Drift)
			assert.Equal(t, string(c.payload), string(u.Raw))
			assert.Equal(t, c.want[0].EventType, u.Type())
			for _, d := range c.want {
				if d.Breaking() {
					assert.Contains(t, err.Error(), d.Pointer, "the error names the member")
				}
			}
		})
	}
}

// TestCheckDriftMalformed: malformed JSON is ErrInvalidPayload, as from
// ParseEvent, and never ErrSchemaDrift.
func TestCheckDriftMalformed(t *testing.T) {
	for _, payload := range []string{``, `[]`, `{"a":1,"a":2}`, "{\"job_id\":\"\xff\",\"status\":\"pending\"}", `{"status":"pending"`} {
		_, err := tl.CheckDrift([]byte(payload))
		require.ErrorIs(t, err, tl.ErrInvalidPayload, "%q", payload)
		assert.NotErrorIs(t, err, tl.ErrSchemaDrift)
	}
}

// TestDriftKindBreaking pins which kinds are breaking.
func TestDriftKindBreaking(t *testing.T) {
	for k, want := range map[tl.DriftKind]bool{
		tl.DriftNewMember: false, tl.DriftNewValue: false, tl.DriftNewType: false,
		tl.DriftWrongKind: true, tl.DriftBadNumber: true, tl.DriftBadTime: true, tl.DriftNewVersion: true,
		"something_else": false,
	} {
		assert.Equal(t, want, k.Breaking(), k)
		assert.Equal(t, want, tl.Drift{Kind: k}.Breaking(), k)
	}
	assert.Equal(t, `tensorlake.sandbox.failed /data/sandbox/outcome_reason new_value "cosmic"`,
		tl.Drift{EventType: failed, Pointer: "/data/sandbox/outcome_reason", Kind: tl.DriftNewValue, Value: "cosmic"}.String())
}

// driftEnv is a Handler behind an httptest.Server that logs JSON records
// and records observations, with deliveries signed by svix's library.
type driftEnv struct {
	h    *tl.Handler
	srv  *httptest.Server
	wh   *svix.Webhook
	logs *testutil.SyncBuffer
	obs  *obsRecorder
}

func newDriftEnv(t *testing.T, opts ...tl.HandlerOption) *driftEnv {
	t.Helper()
	secret := tlwebhooktest.NewSecret()
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	e := &driftEnv{wh: wh, logs: &testutil.SyncBuffer{}, obs: &obsRecorder{}}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e.h, err = tl.NewHandler(secret, append([]tl.HandlerOption{tl.WithLogger(logger), tl.WithObserver(e.obs)}, opts...)...)
	require.NoError(t, err)
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(e.srv.Close)
	return e
}

// post sends body signed by svix under id; sign false sends a forged
// signature instead.
func (e *driftEnv) post(t *testing.T, id string, body []byte, sign bool) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL, strings.NewReader(string(body)))
	require.NoError(t, err)
	now := time.Now()
	sig, err := e.wh.Sign(id, now, body)
	require.NoError(t, err)
	if !sign {
		sig = "v1," + strings.Repeat("A", 43) + "="
	}
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", fmt.Sprint(now.Unix()))
	req.Header.Set("svix-signature", sig)
	resp, err := e.srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// records returns the log records whose message starts with prefix.
func (e *driftEnv) records(t *testing.T, prefix string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		if strings.HasPrefix(m["msg"].(string), prefix) {
			out = append(out, m)
		}
	}
	return out
}

func (e *driftEnv) lastObservation(t *testing.T) tl.Observation {
	t.Helper()
	e.obs.mu.Lock()
	defer e.obs.mu.Unlock()
	require.NotEmpty(t, e.obs.obs)
	return e.obs.obs[len(e.obs.obs)-1]
}

// TestHandlerAdditiveDrift: the typed callback runs, the answer is 204,
// one WARN record per (type, pointer, kind), and every Observation carries
// the delivery's drift.
func TestHandlerAdditiveDrift(t *testing.T) {
	e := newDriftEnv(t)
	var got []*tl.SandboxEvent
	var mu sync.Mutex
	e.h.OnSandboxEvent(func(_ context.Context, ev *tl.SandboxEvent) error {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		return nil
	})
	e.h.OnUnknown(func(context.Context, *tl.UnknownEvent) error { t.Error("OnUnknown ran for additive drift"); return nil })
	body := sandboxFailed(t, `"gpu_model": null`, `"gpu_model": null, "gpu_memory_mb": 24576`, `"out_of_memory"`, `"cosmic_rays"`)
	want := []tl.Drift{
		{EventType: failed, Pointer: "/data/sandbox/outcome_reason", Kind: tl.DriftNewValue, Value: "cosmic_rays"},
		{EventType: failed, Pointer: "/data/sandbox/resources/gpu_memory_mb", Kind: tl.DriftNewMember},
	}
	for i := range 3 {
		require.Equal(t, http.StatusNoContent, e.post(t, fmt.Sprintf("msg_add_%d", i), body, true))
		o := e.lastObservation(t)
		assert.Equal(t, want, o.Drift, "delivery %d", i)
		assert.Equal(t, tl.DeliveryProcessed, o.Outcome)
		assert.NoError(t, o.Err)
	}
	require.Len(t, got, 3)
	require.NotNil(t, got[0].Data.Sandbox.OutcomeReason)
	assert.Equal(t, tl.SandboxOutcomeReason("cosmic_rays"), *got[0].Data.Sandbox.OutcomeReason)

	recs := e.records(t, "tlwebhook: schema drift")
	require.Len(t, recs, 2, "one record per (type, pointer, kind), not per delivery:\n%s", e.logs.String())
	for i, r := range recs {
		assert.Equal(t, "WARN", r["level"])
		assert.Equal(t, string(failed), r["event_type"])
		assert.Equal(t, want[i].Pointer, r["pointer"])
		assert.Equal(t, string(want[i].Kind), r["kind"])
		assert.Equal(t, "msg_add_0", r["delivery_id"])
		assert.Equal(t, "evt_019f95fb-7f33-7000-8000-000000000006", r["event_id"])
	}
	assert.Equal(t, "cosmic_rays", recs[0]["value"], "an unlisted enumeration value is the news")
	assert.NotContains(t, recs[1], "value")
	assert.NotContains(t, e.logs.String(), "24576", "no other value is logged")
}

// TestHandlerBreakingDrift checks both routes of breaking drift: to
// OnUnknown, else OnAny, as an UnknownEvent that keeps the payload and
// says why; with neither, 500 and an ERROR record naming the type and the
// member. The typed callback never runs.
func TestHandlerBreakingDrift(t *testing.T) {
	body := sandboxFailed(t, `"cpus": 2`, `"cpus": "leak-2"`)
	want := []tl.Drift{{EventType: failed, Pointer: "/data/sandbox/resources/cpus", Kind: tl.DriftWrongKind}}
	for _, route := range []string{"OnUnknown", "OnAny", "neither"} {
		t.Run(route, func(t *testing.T) {
			e := newDriftEnv(t)
			e.h.OnSandboxEvent(func(context.Context, *tl.SandboxEvent) error {
				t.Error("the typed callback ran for breaking drift")
				return nil
			})
			var got tl.Event
			switch route {
			case "OnUnknown":
				e.h.OnUnknown(func(_ context.Context, ev *tl.UnknownEvent) error { got = ev; return nil })
			case "OnAny":
				e.h.OnAny(func(_ context.Context, ev tl.Event) error { got = ev; return nil })
			}
			status := e.post(t, "msg_break", body, true)
			o := e.lastObservation(t)
			assert.Equal(t, want, o.Drift)
			assert.Equal(t, failed, o.EventType)
			if route == "neither" {
				assert.Equal(t, http.StatusInternalServerError, status, "Svix keeps the message")
				assert.Equal(t, tl.DeliveryFailed, o.Outcome)
				assert.ErrorIs(t, o.Err, tl.ErrSchemaDrift)
				failedRecs := e.records(t, "tlwebhook: breaking schema drift and neither")
				require.Len(t, failedRecs, 1, e.logs.String())
				assert.Equal(t, "ERROR", failedRecs[0]["level"])
				assert.Contains(t, failedRecs[0]["error"], "/data/sandbox/resources/cpus")
				assert.Contains(t, failedRecs[0]["error"], string(failed))
			} else {
				assert.Equal(t, http.StatusNoContent, status)
				assert.Equal(t, tl.DeliveryProcessed, o.Outcome)
				u, ok := got.(*tl.UnknownEvent)
				require.True(t, ok, "got %T", got)
				assert.Equal(t, string(body), string(u.Raw))
				assert.Equal(t, want, u.Drift)
				assert.Equal(t, failed, u.Type())
				assert.Equal(t, "evt_019f95fb-7f33-7000-8000-000000000006", u.EventID)
			}
			recs := e.records(t, "tlwebhook: breaking schema drift:")
			require.Len(t, recs, 1, e.logs.String())
			assert.Equal(t, "ERROR", recs[0]["level"])
			assert.Equal(t, "/data/sandbox/resources/cpus", recs[0]["pointer"])
			assert.Equal(t, string(tl.DriftWrongKind), recs[0]["kind"])
			assert.NotContains(t, e.logs.String(), "leak-2", "no value is logged")
		})
	}
}

// TestHandlerDriftInbox: with an inbox, a delivery with breaking drift is
// recorded (204) as any other; the worker's Process returns an error
// wrapping ErrSchemaDrift (not permanent: a queue retries it), or runs
// OnUnknown when it is registered.
func TestHandlerDriftInbox(t *testing.T) {
	ib := &memInbox{}
	e := newDriftEnv(t, tl.WithInbox(ib))
	body := sandboxFailed(t, `"event_version": 1`, `"event_version": 2`)
	require.Equal(t, http.StatusNoContent, e.post(t, "msg_inbox", body, true))
	o := e.lastObservation(t)
	assert.Equal(t, tl.DeliveryEnqueued, o.Outcome)
	want := []tl.Drift{{EventType: failed, Pointer: "/event_version", Kind: tl.DriftNewVersion}}
	assert.Equal(t, want, o.Drift)
	ib.mu.Lock()
	payload := ib.keys["evt_019f95fb-7f33-7000-8000-000000000006"]
	ib.mu.Unlock()
	require.Equal(t, string(body), string(payload), "recorded as received")

	d := tl.Delivery{ID: "msg_inbox", Timestamp: time.Now()}
	err := e.h.Process(context.Background(), d, payload)
	require.ErrorIs(t, err, tl.ErrSchemaDrift)
	assert.NotErrorIs(t, err, tl.ErrPermanent, "retried until the library is upgraded")
	assert.Contains(t, err.Error(), "/event_version")
	o = e.lastObservation(t)
	assert.Equal(t, tl.DeliveryFailed, o.Outcome)
	assert.Equal(t, want, o.Drift)

	var got *tl.UnknownEvent
	e.h.OnUnknown(func(_ context.Context, ev *tl.UnknownEvent) error { got = ev; return nil })
	require.NoError(t, e.h.Process(context.Background(), d, payload))
	require.NotNil(t, got)
	assert.Equal(t, 2, got.EventVersion)
	assert.Len(t, e.records(t, "tlwebhook: breaking schema drift:"), 1, "logged once for the three passes")
}

// TestDriftReportsBounded: a Handler remembers (and logs) at most 1,000
// distinct drifts, then logs once that further ones are suppressed; the
// Observer keeps seeing every delivery's drift.
func TestDriftReportsBounded(t *testing.T) {
	e := newDriftEnv(t)
	payload := func(n int) []byte {
		var b strings.Builder
		b.WriteString(`{"job_id":"parse_1","status":"pending","created_at":"2023-10-01T12:00:00Z"`)
		for i := range 100 {
			fmt.Fprintf(&b, `,"m%d_%d":1`, n, i)
		}
		b.WriteString("}")
		return []byte(b.String())
	}
	ctx := context.Background()
	for n := range 12 {
		require.NoError(t, e.h.Process(ctx, tl.Delivery{ID: fmt.Sprint("msg_", n)}, payload(n)))
		assert.Len(t, e.lastObservation(t).Drift, 100)
	}
	assert.Len(t, e.records(t, "tlwebhook: schema drift: the payload"), 1000)
	suppressed := e.records(t, "tlwebhook: schema drift: further")
	require.Len(t, suppressed, 1)
	assert.Equal(t, "WARN", suppressed[0]["level"])

	// Drift remembered before the bound is still known: not logged again.
	require.NoError(t, e.h.Process(ctx, tl.Delivery{ID: "msg_again"}, payload(0)))
	assert.Len(t, e.records(t, "tlwebhook: schema drift"), 1001)
}

// TestForgedDriftNotInspected: a forged or stale delivery with drift is
// rejected before decoding: no drift record, no drift in the Observation.
func TestForgedDriftNotInspected(t *testing.T) {
	e := newDriftEnv(t)
	e.h.OnUnknown(func(context.Context, *tl.UnknownEvent) error {
		t.Error("a callback ran for a forged delivery")
		return nil
	})
	for _, body := range [][]byte{
		sandboxFailed(t, `"cpus": 2`, `"cpus": "2"`),
		sandboxFailed(t, `"gpu_model": null`, `"gpu_model": null, "gpu_memory_mb": 1`),
		sandboxFailed(t, `"out_of_memory"`, `"cosmic_rays"`),
	} {
		require.Equal(t, http.StatusUnauthorized, e.post(t, "msg_forged", body, false))
		o := e.lastObservation(t)
		assert.Nil(t, o.Drift)
		assert.Equal(t, tl.DeliveryRejected, o.Outcome)
	}
	assert.Empty(t, e.records(t, "tlwebhook: schema drift"))
	assert.Empty(t, e.records(t, "tlwebhook: breaking schema drift"))
}

// TestSamplesFitExactly: every sample payload is what this version models,
// member for member: no drift at all.
func TestSamplesFitExactly(t *testing.T) {
	for typ, payload := range tlwebhooktest.Samples() {
		drift, err := tl.CheckDrift(payload)
		require.NoError(t, err, typ)
		assert.Empty(t, drift, typ)
	}
}

// TestNewVersionWithOtherDrift (found by FuzzParseEvent): a newer
// event_version is breaking drift also when the payload has additive drift
// too, which sends it down the walk instead of the strict decode.
func TestNewVersionWithOtherDrift(t *testing.T) {
	for _, typ := range []tl.EventType{tl.EventTypeSandboxFailed, tl.EventTypeApplicationCreated, tl.EventTypeRequestFailed} {
		t.Run(string(typ), func(t *testing.T) {
			sample := string(tlwebhooktest.Sample(typ))
			payload := strings.Replace(sample, `"event_version": 1`, `"event_version": 2, "brand_new_member": {}`, 1)
			require.NotEqual(t, sample, payload)
			ev, err := tl.ParseEvent([]byte(payload))
			require.ErrorIs(t, err, tl.ErrSchemaDrift)
			assert.IsType(t, &tl.UnknownEvent{}, ev, "never a typed event")
			drift, err := tl.CheckDrift([]byte(payload))
			require.NoError(t, err)
			var kinds []tl.DriftKind
			for _, d := range drift {
				kinds = append(kinds, d.Kind)
			}
			assert.Contains(t, kinds, tl.DriftNewVersion)
			assert.Contains(t, kinds, tl.DriftNewMember)
		})
	}
}
