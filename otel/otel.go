// Package tlwebhookotel reports the deliveries a [tlwebhook.Handler]
// answers as OpenTelemetry metrics and traces.
//
// [New] returns a [tlwebhook.Observer]; give it to the Handler with
// [tlwebhook.WithObserver]:
//
//	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithObserver(tlwebhookotel.New()))
//
// Each delivery the Handler answers, and each one run by
// [tlwebhook.Handler.Process], adds one to the counter [MetricDeliveries]
// and ends one span named [SpanName]. A delivery whose callback ran also
// records the callback's run time in the histogram [MetricCallbackDuration].
// Each drift of a verified payload ([tlwebhook.Observation.Drift]) adds one
// to the counter [MetricDrift], with the attributes [AttrEventType] and
// [AttrDriftKind]. The other attributes are [AttrEventType], [AttrOutcome]
// and [AttrStatusCode];
// the span also carries [AttrDeliveryID]. No attribute, span status or event
// carries a payload, a secret, a signature or the text of a callback's
// error.
//
// The span is a child of the span in the request's context: the HTTP server
// span when the route is wrapped by otelhttp. It covers the callback's run
// (it is recorded when the Handler reports the delivery, after the answer is
// known), so a span the callback starts from its context is a sibling of it,
// not a child.
//
// The number of metric series stays bounded: an event type that is not one
// of [tlwebhook.EventTypes] is reported as [UnknownEventType].
package tlwebhookotel

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tlwebhook/tlwebhook"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the meter and the tracer: this
// package's import path.
const ScopeName = "github.com/tlwebhook/tlwebhook/otel"

// Names of the instruments and of the span.
const (
	// MetricDeliveries is the counter of deliveries, one per request the
	// Handler answers and one per [tlwebhook.Handler.Process] call.
	MetricDeliveries = "tlwebhook.deliveries"
	// MetricCallbackDuration is the histogram of the callbacks' run time,
	// in seconds, recorded for each delivery whose callback ran.
	MetricCallbackDuration = "tlwebhook.callback.duration"
	// MetricDrift is the counter of schema drift: one per drift of each
	// observed delivery (see [tlwebhook.Drift]), by event type and kind. A
	// delivery recorded in an inbox is observed twice, when recorded and
	// when processed, so its drift counts twice. Its rate going above zero
	// means Tensorlake changed a payload: see the Handler's log for where.
	MetricDrift = "tlwebhook.drift"
	// SpanName is the name of the span recorded for each delivery.
	SpanName = "tlwebhook.delivery"
)

// Attribute keys.
const (
	// AttrEventType is the delivery's event type: one of
	// [tlwebhook.EventTypes]; "" when the delivery was rejected before it
	// was decoded, or its payload names no type; otherwise
	// [UnknownEventType].
	AttrEventType = attribute.Key("tlwebhook.event_type")
	// AttrOutcome is the [tlwebhook.DeliveryOutcome]: processed, duplicate,
	// rejected, failed, enqueued or discarded. A discarded delivery is one
	// an inbox gave up on (its worker reports it once, beside the failed
	// attempt): the count to alert on.
	AttrOutcome = attribute.Key("tlwebhook.outcome")
	// AttrStatusCode is the HTTP status the Handler answered. It is absent
	// for deliveries run by [tlwebhook.Handler.Process].
	AttrStatusCode = attribute.Key("http.response.status_code")
	// AttrDeliveryID is the delivery's message id (svix-id). Spans only: it
	// is unique per message. An id that does not look like one (too long,
	// or with characters Svix does not use, as an unverified request may
	// send) is left out.
	AttrDeliveryID = attribute.Key("tlwebhook.delivery_id")
	// AttrDriftKind is the [tlwebhook.DriftKind] of a drift ([MetricDrift]
	// only): new_member, new_value, new_type, wrong_kind, bad_number,
	// bad_time or new_version; "unknown" for any other.
	AttrDriftKind = attribute.Key("tlwebhook.drift.kind")
)

// UnknownEventType is the value of [AttrEventType] for an event type that
// is not one of [tlwebhook.EventTypes], so that an unexpected type cannot
// grow the number of metric series.
const UnknownEventType = "unknown"

// An Option configures [New].
type Option func(*config)

type config struct {
	mp metric.MeterProvider
	tp trace.TracerProvider
}

// WithMeterProvider sets the meter provider the instruments are created
// from. The default, or nil, is the global provider,
// [otel.GetMeterProvider].
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithTracerProvider sets the tracer provider the spans are recorded with.
// The default, or nil, is the global provider, [otel.GetTracerProvider].
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// durationBuckets are the histogram's bucket boundaries in seconds: those
// OpenTelemetry's HTTP conventions give request durations, up to the 15 s
// Svix waits for an answer.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 15}

// outcomes lists the outcomes in index order; an outcome not listed takes
// the index len(outcomes) and is reported as "unknown".
var outcomes = []tlwebhook.DeliveryOutcome{
	tlwebhook.DeliveryProcessed, tlwebhook.DeliveryDuplicate, tlwebhook.DeliveryRejected,
	tlwebhook.DeliveryFailed, tlwebhook.DeliveryEnqueued, tlwebhook.DeliveryDiscarded,
}

// driftKinds lists the drift kinds in index order; a kind not listed takes
// the index len(driftKinds) and is reported as "unknown".
var driftKinds = []tlwebhook.DriftKind{
	tlwebhook.DriftNewMember, tlwebhook.DriftNewValue, tlwebhook.DriftNewType,
	tlwebhook.DriftWrongKind, tlwebhook.DriftBadNumber, tlwebhook.DriftBadTime, tlwebhook.DriftNewVersion,
}

// statuses lists the statuses whose attribute sets are cached: 0 (Process)
// and every status of the Handler's table. Others are built per call.
var statuses = []int{0, 204, 400, 401, 403, 405, 409, 413, 500, 503}

// observer implements [tlwebhook.Observer].
type observer struct {
	tracer     trace.Tracer
	deliveries metric.Int64Counter
	duration   metric.Float64Histogram
	drift      metric.Int64Counter

	// typeIndex maps each attribute value of AttrEventType but "unknown"
	// to its index in typeNames; typeNames[len-1] is UnknownEventType.
	typeIndex map[tlwebhook.EventType]int
	typeNames []string

	// attrs caches the attributes of each (type, outcome, status) triple,
	// filled on first use: len(typeNames) * (len(outcomes)+1) *
	// len(statuses) entries.
	attrs []atomic.Pointer[attrs]
	// driftAttrs caches the options of each (type, drift kind) pair:
	// len(typeNames) * (len(driftKinds)+1) entries.
	driftAttrs []atomic.Pointer[[]metric.AddOption]
}

// attrs are the precomputed measurement options and span attributes of one
// (type, outcome, status) triple.
type attrs struct {
	add  []metric.AddOption
	rec  []metric.RecordOption
	span []trace.SpanStartOption // one: the attributes
}

// New returns a [tlwebhook.Observer] that counts deliveries, records
// callback durations and records one span per delivery. Its instruments are
// created once, here; an error the meter provider returns while creating
// them is reported to [otel.Handle].
func New(opts ...Option) tlwebhook.Observer {
	var c config
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	meter := c.mp.Meter(ScopeName)
	deliveries, err := meter.Int64Counter(MetricDeliveries,
		metric.WithDescription("Webhook deliveries answered, by event type, outcome and HTTP status."),
		metric.WithUnit("{delivery}"))
	if err != nil {
		otel.Handle(err)
	}
	duration, err := meter.Float64Histogram(MetricCallbackDuration,
		metric.WithDescription("Run time of webhook callbacks."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		otel.Handle(err)
	}
	drift, err := meter.Int64Counter(MetricDrift,
		metric.WithDescription("Schema drift in verified webhook payloads (Tensorlake changed a payload), by event type and kind."),
		metric.WithUnit("{drift}"))
	if err != nil {
		otel.Handle(err)
	}

	types := tlwebhook.EventTypes()
	o := &observer{
		tracer:     c.tp.Tracer(ScopeName),
		deliveries: deliveries,
		duration:   duration,
		drift:      drift,
		typeIndex:  make(map[tlwebhook.EventType]int, len(types)+1),
		typeNames:  make([]string, 0, len(types)+2),
	}
	for _, t := range append([]tlwebhook.EventType{""}, types...) {
		if _, dup := o.typeIndex[t]; !dup {
			o.typeIndex[t] = len(o.typeNames)
			o.typeNames = append(o.typeNames, string(t))
		}
	}
	o.typeNames = append(o.typeNames, UnknownEventType)
	o.attrs = make([]atomic.Pointer[attrs], len(o.typeNames)*(len(outcomes)+1)*len(statuses))
	o.driftAttrs = make([]atomic.Pointer[[]metric.AddOption], len(o.typeNames)*(len(driftKinds)+1))
	return o
}

// Observe records the delivery described by obs.
func (o *observer) Observe(ctx context.Context, obs tlwebhook.Observation) {
	a := o.attrsFor(obs.EventType, obs.Outcome, obs.Status)

	// The span ends now and starts when the callback started: Observe is
	// called once the answer is known. Without a callback it starts now,
	// with no timestamp option to allocate.
	var span trace.Span
	if obs.Duration > 0 {
		start := time.Now().Add(-obs.Duration)
		ctx, span = o.tracer.Start(ctx, SpanName, a.span[0], trace.WithTimestamp(start))
	} else {
		ctx, span = o.tracer.Start(ctx, SpanName, a.span...)
	}
	if span.IsRecording() {
		if id := obs.Delivery.ID; plausibleID(id) {
			span.SetAttributes(AttrDeliveryID.String(id))
		}
		switch obs.Outcome {
		case tlwebhook.DeliveryRejected, tlwebhook.DeliveryFailed, tlwebhook.DeliveryDiscarded:
			span.SetStatus(codes.Error, describe(obs))
		}
	}
	// Measured inside the span's context, so that exemplars point at it.
	o.deliveries.Add(ctx, 1, a.add...)
	if obs.Duration > 0 {
		o.duration.Record(ctx, obs.Duration.Seconds(), a.rec...)
	}
	for _, d := range obs.Drift {
		o.drift.Add(ctx, 1, o.driftAttrsFor(d.EventType, d.Kind)...)
	}
	span.End()
}

// driftAttrsFor returns the measurement options of a (type, drift kind)
// pair, built once.
func (o *observer) driftAttrsFor(t tlwebhook.EventType, k tlwebhook.DriftKind) []metric.AddOption {
	ti, ok := o.typeIndex[t]
	if !ok {
		ti = len(o.typeNames) - 1
	}
	ki := slices.Index(driftKinds, k)
	if ki < 0 {
		ki = len(driftKinds)
	}
	slot := &o.driftAttrs[ti*(len(driftKinds)+1)+ki]
	if a := slot.Load(); a != nil {
		return *a
	}
	kind := "unknown"
	if ki < len(driftKinds) {
		kind = string(driftKinds[ki])
	}
	a := []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(AttrEventType.String(o.typeNames[ti]), AttrDriftKind.String(kind)))}
	if !slot.CompareAndSwap(nil, &a) {
		return *slot.Load()
	}
	return a
}

// attrsFor returns the attributes of a (type, outcome, status) triple,
// from the cache when the status is a cached one.
func (o *observer) attrsFor(t tlwebhook.EventType, out tlwebhook.DeliveryOutcome, status int) *attrs {
	ti, ok := o.typeIndex[t]
	if !ok {
		ti = len(o.typeNames) - 1
	}
	oi := len(outcomes)
	for i, known := range outcomes {
		if out == known {
			oi = i
			break
		}
	}
	si := -1
	for i, s := range statuses {
		if status == s {
			si = i
			break
		}
	}
	if si < 0 {
		return o.newAttrs(ti, oi, status)
	}
	slot := &o.attrs[(ti*(len(outcomes)+1)+oi)*len(statuses)+si]
	if a := slot.Load(); a != nil {
		return a
	}
	a := o.newAttrs(ti, oi, status)
	if !slot.CompareAndSwap(nil, a) {
		return slot.Load()
	}
	return a
}

// newAttrs builds the attributes of type index ti, outcome index oi and
// status.
func (o *observer) newAttrs(ti, oi, status int) *attrs {
	outcome := "unknown"
	if oi < len(outcomes) {
		outcome = string(outcomes[oi])
	}
	kvs := make([]attribute.KeyValue, 0, 3)
	kvs = append(kvs, AttrEventType.String(o.typeNames[ti]), AttrOutcome.String(outcome))
	if status != 0 {
		kvs = append(kvs, AttrStatusCode.Int(status))
	}
	set := attribute.NewSet(kvs...)
	opt := metric.WithAttributeSet(set)
	return &attrs{
		add:  []metric.AddOption{opt},
		rec:  []metric.RecordOption{opt},
		span: []trace.SpanStartOption{trace.WithAttributes(kvs...)},
	}
}

// sentinels are the library's errors whose fixed text may describe a
// failed or rejected delivery's span status.
var sentinels = []error{
	tlwebhook.ErrMissingHeaders, tlwebhook.ErrInvalidHeaders, tlwebhook.ErrNoMatchingSignature,
	tlwebhook.ErrTimestampTooOld, tlwebhook.ErrTimestampTooNew, tlwebhook.ErrPayloadTooLarge,
	tlwebhook.ErrInvalidPayload, tlwebhook.ErrSchemaDrift, tlwebhook.ErrSourceNotAllowed, tlwebhook.ErrUnauthorized,
	tlwebhook.ErrDeduplicatorFull, tlwebhook.ErrClaimLost,
}

// describe returns the span status description of a rejected or failed
// delivery: fixed text, never the error's own, which may carry a callback's
// words or a request's bytes.
func describe(obs tlwebhook.Observation) string {
	if obs.Outcome == tlwebhook.DeliveryDiscarded {
		return "delivery discarded"
	}
	err := obs.Err
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	switch {
	case errors.Is(err, tlwebhook.ErrPermanent):
		return "callback failed permanently"
	case errors.Is(err, context.DeadlineExceeded):
		return "callback timed out"
	case obs.Outcome == tlwebhook.DeliveryRejected:
		return "delivery rejected"
	case obs.Duration > 0:
		return "callback failed"
	default:
		return "delivery not processed"
	}
}

// plausibleID reports whether id looks like a message id: at most 128
// bytes of letters, digits, '_', '-' and '.'. Svix's ids ("msg_" and 27
// characters) always do.
func plausibleID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}
