package tlwebhookotel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlwebhook/tlwebhook"
	tlwebhookotel "github.com/tlwebhook/tlwebhook/otel"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// quiet keeps the Handlers' logs out of the test output.
var quiet = tlwebhook.WithLogger(slog.New(slog.DiscardHandler))

// canary is put in callbacks' errors; no span may carry it.
const canary = "callback-canary-do-not-export"

// rig is an observer wired to the real OpenTelemetry SDK: a manual metric
// reader and a span recorder.
type rig struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	mp     *sdkmetric.MeterProvider
	tp     *sdktrace.TracerProvider
	obs    tlwebhook.Observer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	r.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	t.Cleanup(func() {
		_ = r.mp.Shutdown(context.Background())
		_ = r.tp.Shutdown(context.Background())
	})
	r.obs = tlwebhookotel.New(tlwebhookotel.WithMeterProvider(r.mp), tlwebhookotel.WithTracerProvider(r.tp))
	return r
}

// handler returns a quiet Handler reporting to the rig, with a new secret.
func (r *rig) handler(t *testing.T, opts ...tlwebhook.HandlerOption) (*tlwebhook.Handler, string) {
	t.Helper()
	secret := tlwebhooktest.NewSecret()
	h, err := tlwebhook.NewHandler(secret, append([]tlwebhook.HandlerOption{tlwebhook.WithObserver(r.obs), quiet}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return h, secret
}

// point is one data point of a metric: its attributes written as
// "type|outcome|status" (status empty when absent) and its value (the
// count, for the histogram).
type point struct {
	attrs string
	value int64
}

func attrKey(set attribute.Set) string {
	get := func(k attribute.Key) string {
		v, ok := set.Value(k)
		if !ok {
			return ""
		}
		return v.String()
	}
	if set.Len() > 3 {
		return "unexpected attributes: " + fmt.Sprint(set.ToSlice())
	}
	return get(tlwebhookotel.AttrEventType) + "|" + get(tlwebhookotel.AttrOutcome) + "|" + get(tlwebhookotel.AttrStatusCode)
}

// collect returns the data points of the deliveries counter and of the
// duration histogram, sorted.
func (r *rig) collect(t *testing.T) (deliveries, durations []point) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != tlwebhookotel.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			switch m.Name {
			case tlwebhookotel.MetricDeliveries:
				sum, ok := m.Data.(metricdata.Sum[int64])
				if !ok || !sum.IsMonotonic {
					t.Fatalf("%s: data %T, want a monotonic Sum[int64]", m.Name, m.Data)
				}
				for _, dp := range sum.DataPoints {
					deliveries = append(deliveries, point{attrKey(dp.Attributes), dp.Value})
				}
			case tlwebhookotel.MetricCallbackDuration:
				if m.Unit != "s" {
					t.Errorf("%s: unit %q, want s", m.Name, m.Unit)
				}
				h, ok := m.Data.(metricdata.Histogram[float64])
				if !ok {
					t.Fatalf("%s: data %T, want Histogram[float64]", m.Name, m.Data)
				}
				for _, dp := range h.DataPoints {
					if dp.Count > 0 && (dp.Sum <= 0 || dp.Sum > 60) {
						t.Errorf("%s: sum %v s over %d runs, want a plausible positive duration", m.Name, dp.Sum, dp.Count)
					}
					durations = append(durations, point{attrKey(dp.Attributes), int64(dp.Count)})
				}
			}
		}
	}
	less := func(a, b point) int { return strings.Compare(a.attrs, b.attrs) }
	slices.SortFunc(deliveries, less)
	slices.SortFunc(durations, less)
	return deliveries, durations
}

// spanWant is what one recorded span must show.
type spanWant struct {
	attrs string     // "type|outcome|status"
	code  codes.Code // Unset or Error
	desc  string     // status description
	id    string     // tlwebhook.delivery_id; "" for absent
}

// checkOne checks that one delivery with the attributes attrs was counted,
// and that its callback duration was recorded exactly when a callback ran.
func (r *rig) checkOne(t *testing.T, attrs string, ran bool) {
	t.Helper()
	deliveries, durations := r.collect(t)
	if want := []point{{attrs, 1}}; !slices.Equal(deliveries, want) {
		t.Errorf("%s: got %v, want %v", tlwebhookotel.MetricDeliveries, deliveries, want)
	}
	var wantDur []point
	if ran {
		wantDur = []point{{attrs, 1}}
	}
	if !slices.Equal(durations, wantDur) {
		t.Errorf("%s: got %v, want %v", tlwebhookotel.MetricCallbackDuration, durations, wantDur)
	}
}

func (r *rig) checkSpans(t *testing.T, want []spanWant, forbidden ...string) {
	t.Helper()
	var got []spanWant
	for _, s := range r.spans.Ended() {
		if s.Name() != tlwebhookotel.SpanName {
			continue
		}
		set := attribute.NewSet(s.Attributes()...)
		id := ""
		if v, ok := set.Value(tlwebhookotel.AttrDeliveryID); ok {
			id = v.AsString()
		}
		rest, _ := set.Filter(func(kv attribute.KeyValue) bool { return kv.Key != tlwebhookotel.AttrDeliveryID })
		got = append(got, spanWant{attrKey(rest), s.Status().Code, s.Status().Description, id})
		checkClean(t, s, forbidden)
	}
	cmp := func(a, b spanWant) int { return strings.Compare(a.attrs+a.id, b.attrs+b.id) }
	slices.SortFunc(got, cmp)
	want = slices.Clone(want)
	slices.SortFunc(want, cmp)
	if !slices.Equal(got, want) {
		t.Errorf("spans:\n got  %+v\n want %+v", got, want)
	}
}

// checkClean fails if any attribute, status, event or link of s contains
// one of forbidden (a secret, a signature, payload bytes, a callback's
// error text).
func checkClean(t *testing.T, s sdktrace.ReadOnlySpan, forbidden []string) {
	t.Helper()
	var texts []string
	for _, kv := range s.Attributes() {
		texts = append(texts, kv.Value.String())
	}
	texts = append(texts, s.Status().Description, s.Name())
	for _, ev := range s.Events() {
		texts = append(texts, ev.Name)
		for _, kv := range ev.Attributes {
			texts = append(texts, kv.Value.String())
		}
	}
	for _, text := range texts {
		for _, f := range forbidden {
			if f != "" && strings.Contains(text, f) {
				t.Errorf("span %q exposes %.40q in %.80q", s.Name(), f, text)
			}
		}
	}
}

// memInbox is a small in-memory tlwebhook.Inbox.
type memInbox struct {
	mu   sync.Mutex
	keys map[string]bool
	err  error
}

func (m *memInbox) Enqueue(_ context.Context, d tlwebhook.Delivery, _ []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if m.keys == nil {
		m.keys = make(map[string]bool)
	}
	m.keys[d.IdempotencyKey()] = true
	return nil
}

// downDedup is a tlwebhook.Deduplicator whose store is unreachable.
type downDedup struct{}

func (downDedup) Claim(context.Context, string) (string, tlwebhook.ClaimResult, error) {
	return "", 0, errors.New("store unreachable")
}
func (downDedup) Complete(context.Context, string, string) error { return nil }
func (downDedup) Release(context.Context, string, string) error  { return nil }

// delivery is a request to send to the Handler under test.
type delivery struct {
	method string
	body   []byte
	id     string
	sign   string // secret to sign with; "" signs with the Handler's
	header http.Header
}

// send posts d to url and returns the status.
func send(t *testing.T, client *http.Client, url, secret string, d delivery) int {
	t.Helper()
	if d.method == "" {
		d.method = http.MethodPost
	}
	if d.id == "" {
		d.id = tlwebhooktest.NewMessageID()
	}
	if d.sign == "" {
		d.sign = secret
	}
	signer, err := tlwebhooktest.NewSigner(d.sign)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(d.method, url, bytes.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = signer.HeaderFor(d.id, time.Now(), d.body)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range d.header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

var (
	typeCompleted = string(tlwebhook.EventTypeJobCompleted)
	typeSandbox   = string(tlwebhook.EventTypeSandboxFailed)
)

// TestStatusTable sends one delivery per row of the Handler's status table
// through a real Handler behind an httptest.Server, and checks the exact
// counter increments, histogram recordings and span of each.
func TestStatusTable(t *testing.T) {
	fail := func(context.Context, *tlwebhook.JobCompleted) error {
		return fmt.Errorf("updating row: %s", canary)
	}
	tests := []struct {
		name     string
		opts     []tlwebhook.HandlerOption
		callback func(context.Context, *tlwebhook.JobCompleted) error // nil: none registered
		d        delivery
		status   int
		ran      bool // the callback ran: one duration recorded
		code     codes.Code
		desc     string // span status description
		attrs    string // "type|outcome|status"
		spanID   bool   // the span carries the delivery id
	}{
		{
			name:     "processed",
			callback: func(context.Context, *tlwebhook.JobCompleted) error { return nil },
			d:        delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status:   204, ran: true, attrs: typeCompleted + "|processed|204", spanID: true,
		},
		{
			name:   "no callback",
			d:      delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status: 204, attrs: typeCompleted + "|processed|204", spanID: true,
		},
		{
			name:     "callback error",
			callback: fail,
			d:        delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status:   500, ran: true, code: codes.Error, desc: "callback failed",
			attrs: typeCompleted + "|failed|500", spanID: true,
		},
		{
			name: "callback panic",
			callback: func(context.Context, *tlwebhook.JobCompleted) error {
				panic(canary)
			},
			d:      delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status: 500, ran: true, code: codes.Error, desc: "callback failed",
			attrs: typeCompleted + "|failed|500", spanID: true,
		},
		{
			name: "permanent",
			callback: func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
				return tlwebhook.Permanent(fail(ctx, ev))
			},
			d:      delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status: 500, ran: true, code: codes.Error, desc: "callback failed permanently",
			attrs: typeCompleted + "|failed|500", spanID: true,
		},
		{
			name: "timeout",
			opts: []tlwebhook.HandlerOption{tlwebhook.WithCallbackTimeout(20 * time.Millisecond)},
			callback: func(ctx context.Context, _ *tlwebhook.JobCompleted) error {
				<-ctx.Done()
				return fmt.Errorf("%s: %w", canary, ctx.Err())
			},
			d:      delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status: 503, ran: true, code: codes.Error, desc: "callback timed out",
			attrs: typeCompleted + "|failed|503", spanID: true,
		},
		{
			name:     "deduplicator unavailable",
			opts:     []tlwebhook.HandlerOption{tlwebhook.WithDeduplicator(downDedup{})},
			callback: fail,
			d:        delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status:   503, code: codes.Error, desc: "delivery not processed",
			attrs: typeCompleted + "|failed|503", spanID: true,
		},
		{
			name:   "enqueued",
			opts:   []tlwebhook.HandlerOption{tlwebhook.WithInbox(&memInbox{})},
			d:      delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status: 204, attrs: typeCompleted + "|enqueued|204", spanID: true,
		},
		{
			name:   "inbox unavailable",
			opts:   []tlwebhook.HandlerOption{tlwebhook.WithInbox(&memInbox{err: errors.New(canary)})},
			d:      delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status: 503, code: codes.Error, desc: "delivery not processed",
			attrs: typeCompleted + "|failed|503", spanID: true,
		},
		{
			name:   "bad signature",
			d:      delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted), sign: tlwebhooktest.NewSecret()},
			status: 401, code: codes.Error, desc: tlwebhook.ErrNoMatchingSignature.Error(),
			attrs: "|rejected|401", spanID: true,
		},
		{
			name:   "additional authentication",
			opts:   []tlwebhook.HandlerOption{tlwebhook.WithHeaderAuth("X-Token", "expected-token")},
			d:      delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted), header: http.Header{"X-Token": {canary}}},
			status: 401, code: codes.Error, desc: tlwebhook.ErrUnauthorized.Error(),
			attrs: "|rejected|401",
		},
		{
			name:   "not a JSON object",
			d:      delivery{body: []byte(`["` + canary + `"]`)},
			status: 400, code: codes.Error, desc: tlwebhook.ErrInvalidPayload.Error(),
			attrs: "|rejected|400", spanID: true,
		},
		{
			name:   "method",
			d:      delivery{method: http.MethodPut, body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status: 405, code: codes.Error, desc: "delivery rejected",
			attrs: "|rejected|405",
		},
		{
			name:   "too large",
			opts:   []tlwebhook.HandlerOption{tlwebhook.WithMaxBodyBytes(64)},
			d:      delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status: 413, code: codes.Error, desc: tlwebhook.ErrPayloadTooLarge.Error(),
			attrs: "|rejected|413",
		},
		{
			name:   "source not allowed",
			opts:   []tlwebhook.HandlerOption{tlwebhook.WithAllowedSources(netip.MustParsePrefix("192.0.2.0/24"))},
			d:      delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)},
			status: 403, code: codes.Error, desc: tlwebhook.ErrSourceNotAllowed.Error(),
			attrs: "|rejected|403",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			secret := tlwebhooktest.NewSecret()
			h, err := tlwebhook.NewHandler(secret, append([]tlwebhook.HandlerOption{tlwebhook.WithObserver(r.obs), quiet}, tt.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			if tt.callback != nil {
				h.OnJobCompleted(tt.callback)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()

			tt.d.id = tlwebhooktest.NewMessageID()
			if got := send(t, srv.Client(), srv.URL, secret, tt.d); got != tt.status {
				t.Fatalf("status %d, want %d", got, tt.status)
			}

			r.checkOne(t, tt.attrs, tt.ran)
			id := ""
			if tt.spanID {
				id = tt.d.id
			}
			r.checkSpans(t, []spanWant{{tt.attrs, tt.code, tt.desc, id}},
				secret, strings.TrimPrefix(secret, "whsec_"), canary, string(tt.d.body))
		})
	}
}

// TestRejectedDeliveryID checks that an unverified request's svix-id is
// reported only when it looks like a message id.
func TestRejectedDeliveryID(t *testing.T) {
	tests := []struct {
		name, id, want string
	}{
		{"svix id", "msg_2mTHw4tqGeTchIwL8PvP7DiUMGM", "msg_2mTHw4tqGeTchIwL8PvP7DiUMGM"},
		{"too long", "msg_" + strings.Repeat("a", 200), ""},
		{"odd characters", "msg_<script>", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			h, secret := r.handler(t)
			srv := httptest.NewServer(h)
			defer srv.Close()
			d := delivery{id: tt.id, body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted), sign: tlwebhooktest.NewSecret()}
			if got := send(t, srv.Client(), srv.URL, secret, d); got != 401 {
				t.Fatalf("status %d, want 401", got)
			}
			spans := r.spans.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			got := ""
			for _, kv := range spans[0].Attributes() {
				if kv.Key == tlwebhookotel.AttrDeliveryID {
					got = kv.Value.AsString()
				}
			}
			// The Handler may report no id for a rejected delivery at all.
			if got != tt.want && got != "" {
				t.Errorf("%s = %q, want %q or absent", tlwebhookotel.AttrDeliveryID, got, tt.want)
			}
			if tt.want == "" && got != "" {
				t.Errorf("%s = %q, want absent", tlwebhookotel.AttrDeliveryID, got)
			}
		})
	}
}

// TestDuplicates sends three copies of one message to a Handler with a
// MemoryDeduplicator: the second while the first's callback runs (409),
// the third after it completed (204, a duplicate, not a processed one).
func TestDuplicates(t *testing.T) {
	r := newRig(t)
	secret := tlwebhooktest.NewSecret()
	dedup, err := tlwebhook.NewMemoryDeduplicator()
	if err != nil {
		t.Fatal(err)
	}
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithObserver(r.obs), quiet, tlwebhook.WithDeduplicator(dedup))
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var runs int
	h.OnSandboxEvent(func(ctx context.Context, _ *tlwebhook.SandboxEvent) error {
		runs++
		close(started)
		<-release
		return nil
	})
	srv := httptest.NewServer(h)
	defer srv.Close()

	d := delivery{id: tlwebhooktest.NewMessageID(), body: tlwebhooktest.Sample(tlwebhook.EventTypeSandboxFailed)}
	first := make(chan int)
	go func() { first <- send(t, srv.Client(), srv.URL, secret, d) }()
	<-started
	if got := send(t, srv.Client(), srv.URL, secret, d); got != http.StatusConflict {
		t.Errorf("copy while the first runs: status %d, want 409", got)
	}
	close(release)
	if got := <-first; got != http.StatusNoContent {
		t.Errorf("first copy: status %d, want 204", got)
	}
	if got := send(t, srv.Client(), srv.URL, secret, d); got != http.StatusNoContent {
		t.Errorf("copy after completion: status %d, want 204", got)
	}
	if runs != 1 {
		t.Errorf("callback ran %d times, want 1", runs)
	}

	deliveries, durations := r.collect(t)
	wantCount := []point{
		{typeSandbox + "|duplicate|204", 1},
		{typeSandbox + "|duplicate|409", 1},
		{typeSandbox + "|processed|204", 1},
	}
	if !slices.Equal(deliveries, wantCount) {
		t.Errorf("%s: got %v, want %v", tlwebhookotel.MetricDeliveries, deliveries, wantCount)
	}
	if want := []point{{typeSandbox + "|processed|204", 1}}; !slices.Equal(durations, want) {
		t.Errorf("%s: got %v, want %v", tlwebhookotel.MetricCallbackDuration, durations, want)
	}
	r.checkSpans(t, []spanWant{
		{typeSandbox + "|duplicate|204", codes.Unset, "", d.id},
		{typeSandbox + "|duplicate|409", codes.Unset, "", d.id},
		{typeSandbox + "|processed|204", codes.Unset, "", d.id},
	}, secret, canary)
}

// TestProcess checks deliveries run by Handler.Process: no status
// attribute, and the same outcomes as over HTTP.
func TestProcess(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		err     error // the callback's
		attrs   string
		ran     bool
		code    codes.Code
		desc    string
	}{
		{"processed", tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted), nil, typeCompleted + "|processed|", true, codes.Unset, ""},
		{"callback error", tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted), errors.New(canary), typeCompleted + "|failed|", true, codes.Error, "callback failed"},
		{"permanent", tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted), tlwebhook.Permanent(errors.New(canary)), typeCompleted + "|failed|", true, codes.Error, "callback failed permanently"},
		{"undecodable", []byte(`["` + canary + `"]`), nil, "|rejected|", false, codes.Error, tlwebhook.ErrInvalidPayload.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			h, err := tlwebhook.NewHandler(tlwebhooktest.NewSecret(), tlwebhook.WithObserver(r.obs), quiet)
			if err != nil {
				t.Fatal(err)
			}
			h.OnJobCompleted(func(context.Context, *tlwebhook.JobCompleted) error {
				time.Sleep(time.Millisecond)
				return tt.err
			})
			d := tlwebhook.Delivery{ID: tlwebhooktest.NewMessageID(), Timestamp: time.Now()}
			err = h.Process(context.Background(), d, tt.payload)
			if (err != nil) != (tt.code == codes.Error) {
				t.Fatalf("Process: %v", err)
			}
			r.checkOne(t, tt.attrs, tt.ran)
			r.checkSpans(t, []spanWant{{tt.attrs, tt.code, tt.desc, d.ID}}, canary)
		})
	}
}

// TestDiscarded checks what an inbox's worker reports through
// Handler.Report when it gives up on a delivery: counted with the outcome
// discarded and no status, no duration, a span with an error status that
// carries no word of the callback's error.
func TestDiscarded(t *testing.T) {
	r := newRig(t)
	h, err := tlwebhook.NewHandler(tlwebhooktest.NewSecret(), tlwebhook.WithObserver(r.obs), quiet)
	if err != nil {
		t.Fatal(err)
	}
	d := tlwebhook.Delivery{ID: tlwebhooktest.NewMessageID(), Timestamp: time.Now()}
	h.Report(context.Background(), tlwebhook.Observation{Delivery: d, EventType: tlwebhook.EventTypeJobCompleted,
		Outcome: tlwebhook.DeliveryDiscarded, Err: tlwebhook.Permanent(errors.New(canary))})
	attrs := typeCompleted + "|discarded|"
	r.checkOne(t, attrs, false)
	r.checkSpans(t, []spanWant{{attrs, codes.Error, "delivery discarded", d.ID}}, canary)
}

// TestUnknownEventType checks that types outside tlwebhook.EventTypes
// collapse to one attribute value, whichever struct they decode to.
func TestUnknownEventType(t *testing.T) {
	r := newRig(t)
	h, secret := r.handler(t)
	h.OnUnknown(func(context.Context, *tlwebhook.UnknownEvent) error { return nil })
	srv := httptest.NewServer(h)
	defer srv.Close()

	bodies := []string{
		`{"event_type": "tensorlake.novel.thing", "event_id": "e1"}`,
		`{"event_type": "tensorlake.novel.other", "event_id": "e2"}`,
		`{"event_type": "` + canary + `"}`,
		`{"hello": "world"}`,
	}
	for _, b := range bodies {
		if got := send(t, srv.Client(), srv.URL, secret, delivery{body: []byte(b)}); got != 204 {
			t.Fatalf("%s: status %d, want 204", b, got)
		}
	}
	// A new type of a modelled family is not one of EventTypes either.
	sandbox := bytes.Replace(tlwebhooktest.Sample(tlwebhook.EventTypeSandboxFailed),
		[]byte(tlwebhook.EventTypeSandboxFailed), []byte("tensorlake.sandbox.hibernated"), 1)
	if got := send(t, srv.Client(), srv.URL, secret, delivery{body: sandbox}); got != 204 {
		t.Fatalf("sandbox family: status %d, want 204", got)
	}

	deliveries, _ := r.collect(t)
	// The payload without an event_type decodes to an UnknownEvent of type
	// "", which is reported as "".
	want := []point{
		{tlwebhookotel.UnknownEventType + "|processed|204", 4},
		{"|processed|204", 1},
	}
	if !slices.Equal(deliveries, want) {
		t.Errorf("%s: got %v, want %v", tlwebhookotel.MetricDeliveries, deliveries, want)
	}
	for _, s := range r.spans.Ended() {
		checkClean(t, s, []string{canary})
	}
}

// TestObserveDirect covers what the Handler does not produce today: an
// outcome or a status outside the known sets.
func TestObserveDirect(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.obs.Observe(ctx, tlwebhook.Observation{EventType: "x.y", Outcome: "odd", Status: 418})
	r.obs.Observe(ctx, tlwebhook.Observation{EventType: tlwebhook.EventTypeJobCreated, Outcome: tlwebhook.DeliveryProcessed, Status: 299, Duration: 2 * time.Second})
	deliveries, durations := r.collect(t)
	want := []point{
		{typeCreated() + "|processed|299", 1},
		{"unknown|unknown|418", 1},
	}
	if !slices.Equal(deliveries, want) {
		t.Errorf("%s: got %v, want %v", tlwebhookotel.MetricDeliveries, deliveries, want)
	}
	if want := []point{{typeCreated() + "|processed|299", 1}}; !slices.Equal(durations, want) {
		t.Errorf("%s: got %v, want %v", tlwebhookotel.MetricCallbackDuration, durations, want)
	}
	for _, s := range r.spans.Ended() {
		if d := s.EndTime().Sub(s.StartTime()); s.EndTime().Before(s.StartTime()) {
			t.Errorf("span ends before it starts (%v)", d)
		}
		if v := attribute.NewSet(s.Attributes()...); v.HasValue(tlwebhookotel.AttrEventType) {
			if et, _ := v.Value(tlwebhookotel.AttrEventType); et.AsString() == typeCreated() {
				// It ends when Observe ends, a moment after it was called.
				if d := s.EndTime().Sub(s.StartTime()); d < 2*time.Second || d > 3*time.Second {
					t.Errorf("span lasts %v, want the callback's 2s", d)
				}
			}
		}
	}
}

func typeCreated() string { return string(tlwebhook.EventTypeJobCreated) }

// TestParentSpan checks that the delivery span is a child of the HTTP
// server span when otelhttp wraps the route, in the trace the sender
// propagated.
func TestParentSpan(t *testing.T) {
	r := newRig(t)
	h, secret := r.handler(t)
	h.OnJobCompleted(func(context.Context, *tlwebhook.JobCompleted) error { return nil })
	srv := httptest.NewServer(otelhttp.NewHandler(h, "POST /webhooks/tensorlake",
		otelhttp.WithTracerProvider(r.tp), otelhttp.WithMeterProvider(r.mp)))
	defer srv.Close()

	if got := send(t, srv.Client(), srv.URL, secret, delivery{body: tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)}); got != 204 {
		t.Fatalf("status %d, want 204", got)
	}
	var server, ours sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		switch {
		case s.Name() == tlwebhookotel.SpanName:
			ours = s
		case s.SpanKind() == trace.SpanKindServer:
			server = s
		}
	}
	if server == nil || ours == nil {
		t.Fatalf("spans %v: want a server span and a %s span", names(r.spans.Ended()), tlwebhookotel.SpanName)
	}
	if ours.Parent().SpanID() != server.SpanContext().SpanID() || ours.SpanContext().TraceID() != server.SpanContext().TraceID() {
		t.Errorf("delivery span's parent %v, want the server span %v", ours.Parent(), server.SpanContext())
	}
	if ours.StartTime().Before(server.StartTime()) || ours.EndTime().After(server.EndTime()) {
		t.Errorf("delivery span [%v, %v] not inside the server span [%v, %v]",
			ours.StartTime(), ours.EndTime(), server.StartTime(), server.EndTime())
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// TestConcurrent observes from many goroutines at once (run with -race).
func TestConcurrent(t *testing.T) {
	r := newRig(t)
	var wg sync.WaitGroup
	types := tlwebhook.EventTypes()
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				r.obs.Observe(context.Background(), tlwebhook.Observation{
					EventType: types[(g+i)%len(types)],
					Outcome:   tlwebhook.DeliveryProcessed,
					Status:    204,
				})
			}
		})
	}
	wg.Wait()
	deliveries, _ := r.collect(t)
	var total int64
	for _, p := range deliveries {
		total += p.value
	}
	if total != 800 {
		t.Errorf("counted %d deliveries, want 800", total)
	}
}

// collectDrift returns the data points of the drift counter as
// "type|kind" and count, sorted.
func (r *rig) collectDrift(t *testing.T) []point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	var out []point
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != tlwebhookotel.MetricDrift {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic {
				t.Fatalf("%s: data %T, want a monotonic Sum[int64]", m.Name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				if dp.Attributes.Len() != 2 {
					t.Errorf("%s: attributes %v, want type and kind", m.Name, dp.Attributes.ToSlice())
				}
				et, _ := dp.Attributes.Value(tlwebhookotel.AttrEventType)
				k, _ := dp.Attributes.Value(tlwebhookotel.AttrDriftKind)
				out = append(out, point{et.AsString() + "|" + k.AsString(), dp.Value})
			}
		}
	}
	slices.SortFunc(out, func(a, b point) int { return strings.Compare(a.attrs, b.attrs) })
	return out
}

// TestDrift counts each drift of each verified delivery by type (collapsed
// like the deliveries') and kind; a breaking drift without OnUnknown is a
// failed delivery whose span names the sentinel; forged deliveries count
// nothing.
func TestDrift(t *testing.T) {
	r := newRig(t)
	h, secret := r.handler(t)
	srv := httptest.NewServer(h)
	defer srv.Close()
	sample := string(tlwebhooktest.Sample(tlwebhook.EventTypeSandboxFailed))
	additive := strings.NewReplacer(`"gpu_model": null`, `"gpu_model": null, "gpu_memory_mb": 1`, `"out_of_memory"`, `"cosmic_rays"`).Replace(sample)
	newType := strings.Replace(additive, string(tlwebhook.EventTypeSandboxFailed), "tensorlake.sandbox.hibernated", 1)
	breaking := strings.Replace(sample, `"cpus": 2`, `"cpus": "2"`, 1)
	for _, d := range []delivery{
		{body: []byte(additive)}, {body: []byte(additive)}, {body: []byte(newType)},
		{body: []byte(breaking), sign: tlwebhooktest.NewSecret()}, // forged: 401, not inspected
	} {
		send(t, srv.Client(), srv.URL, secret, d)
	}
	if got := send(t, srv.Client(), srv.URL, secret, delivery{body: []byte(breaking)}); got != http.StatusInternalServerError {
		t.Fatalf("breaking drift without OnUnknown: status %d, want 500", got)
	}
	failed := string(tlwebhook.EventTypeSandboxFailed)
	want := []point{
		{failed + "|new_member", 2},
		{failed + "|new_value", 2},
		{failed + "|wrong_kind", 1},
		{tlwebhookotel.UnknownEventType + "|new_member", 1},
		{tlwebhookotel.UnknownEventType + "|new_type", 1},
		{tlwebhookotel.UnknownEventType + "|new_value", 1},
	}
	if got := r.collectDrift(t); !slices.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", tlwebhookotel.MetricDrift, got, want)
	}
	spans := r.spans.Ended()
	last := spans[len(spans)-1]
	if last.Status().Code != codes.Error || last.Status().Description != tlwebhook.ErrSchemaDrift.Error() {
		t.Errorf("span status %v, want the ErrSchemaDrift sentinel", last.Status())
	}
}
