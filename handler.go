package tlwebhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A Handler is an [http.Handler] that receives Tensorlake webhooks: it
// verifies each delivery, decodes it into a typed [Event] and calls the
// callback registered for the event's type. Create one with [NewHandler] and
// register callbacks with its On methods, [On] or [Handler.OnAny], before or
// while it serves.
//
// The Handler answers:
//
//   - 204 when the delivery verified and its callback returned nil, or no
//     callback is registered for its type, or it was recorded in the inbox
//     ([WithInbox]);
//   - 500 when the callback returned an error or panicked (Svix retries);
//     with the header webhook-delivery: abort-message when the error is
//     [Permanent] (Svix stops retrying);
//   - 503 when the callback returned after its deadline ([WithCallbackTimeout]),
//     or the deduplicator ([WithDeduplicator]) or inbox failed;
//   - 409 when a deduplicator reports the same message in progress;
//   - 403 when the source address is not allowed ([WithAllowedSources]);
//   - 405 with Allow: POST for other methods;
//   - 413 when the body is over the limit ([WithMaxBodyBytes]);
//   - 401 when signature headers are missing or malformed, no signature
//     matches, the timestamp is outside the tolerance, or additional
//     authentication ([WithBasicAuth], [WithHeaderAuth]) failed;
//   - 500 when the verified payload does not fit its event struct (breaking
//     [Drift], [ErrSchemaDrift]) and neither [Handler.OnUnknown] nor
//     [Handler.OnAny] is registered: Svix keeps retrying while the library
//     is upgraded;
//   - 400 when the verified body is not a single valid JSON object.
//
// Checks that need no body (source, method, declared length, authentication,
// headers, timestamp) come before the body is read. Response bodies are
// short and fixed; details go to the logger ([WithLogger]).
//
// Exactly one callback runs per delivery: the one registered for the
// event's struct (a lifecycle family's struct, such as [SandboxEvent],
// takes every type of its family); else the catch-all ([Handler.OnAny]);
// else none.
//
// Tensorlake changes its payloads over time ([Drift]). A delivery with
// additive drift (a new member, enumeration value or type of a family) is
// decoded and goes to its typed callback; one with breaking drift (see
// [ErrSchemaDrift]) goes to OnUnknown, else OnAny, as an [UnknownEvent].
// Each (event type, pointer, kind) of drift is logged once per Handler, at
// warn level when additive and error level when breaking, up to 1,000 of
// them; [Observation.Drift] carries every delivery's drift. Only verified
// deliveries are inspected.
//
// Callbacks receive the request's context, which carries the [Delivery]
// ([DeliveryFromContext]). Svix delivers at least once and in any order: a
// callback may see the same event more than once (use
// [Delivery.IdempotencyKey]) and events out of order (see [Envelope.Compare]).
type Handler struct {
	v        *Verifier
	logger   *slog.Logger
	dedup    Deduplicator
	renewer  LeaseRenewer // dedup, when it renews claims
	timeout  time.Duration
	inbox    Inbox
	observer Observer

	callbacks []atomic.Pointer[callbackFunc] // one slot per row of the event table
	any       atomic.Pointer[callbackFunc]
	drift     driftLog
}

// callbackFunc is a registered callback, typed away.
type callbackFunc func(context.Context, Event) error

// NewHandler returns a [Handler] for the given endpoint key (see
// [NewVerifier]), with no callbacks registered. It returns an error wrapping
// [ErrInvalidSecret] if a key is not valid, and one wrapping
// [ErrInvalidOption] for an unusable option or combination of options.
func NewHandler(secret string, opts ...HandlerOption) (*Handler, error) {
	cfg, err := newHandlerConfig(secret, opts)
	if err != nil {
		return nil, err
	}
	v, err := newVerifier(&cfg.verifierConfig)
	if err != nil {
		return nil, err
	}
	h := &Handler{
		v:         v,
		logger:    cfg.logger,
		dedup:     cfg.dedup,
		timeout:   cfg.callbackTimeout,
		inbox:     cfg.inbox,
		observer:  cfg.observer,
		callbacks: make([]atomic.Pointer[callbackFunc], len(kinds)),
	}
	h.renewer, _ = cfg.dedup.(LeaseRenewer)
	return h, nil
}

// String describes the handler without revealing any key.
func (h *Handler) String() string { return "tlwebhook.Handler{" + h.v.String() + "}" }

// GoString is like String, so that %#v reveals no key either.
func (h *Handler) GoString() string { return h.String() }

// LogValue is like String, for [log/slog].
func (h *Handler) LogValue() slog.Value { return slog.StringValue(h.String()) }

// resolve returns the callback that handles an event of table row k: its
// struct's, else the catch-all, else nil.
func (h *Handler) resolve(k int) *callbackFunc {
	if fn := h.callbacks[k].Load(); fn != nil {
		return fn
	}
	return h.any.Load()
}

// result is what happened to one delivery after it was decoded.
type result struct {
	status  int
	outcome DeliveryOutcome
	err     error
	dur     time.Duration
	msg     string
	level   slog.Level
}

// ServeHTTP receives one delivery; see [Handler] for the answers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bp := bodyPool.Get().(*[]byte)
	body, d, status, err := h.v.receive(r, (*bp)[:0])
	if err != nil {
		bodyPool.Put(bp)
		h.v.reject(w, r, status, d.ID, err)
		h.observe(r.Context(), Observation{Delivery: d, Outcome: DeliveryRejected, Status: status, Err: err})
		return
	}
	ev, k, drift, err := parse(body, true, &h.drift)
	if err != nil && !errors.Is(err, ErrSchemaDrift) {
		h.putBody(bp, body)
		h.v.reject(w, r, http.StatusBadRequest, d.ID, err)
		h.observe(r.Context(), Observation{Delivery: d, Outcome: DeliveryRejected, Status: http.StatusBadRequest, Err: err})
		return
	}
	d = withEventID(d, ev)
	ctx := contextWithDelivery(r.Context(), d)
	h.drift.report(ctx, h.logger, d, drift)
	var res result
	if h.inbox != nil {
		res = h.enqueue(ctx, d, body)
		h.putBody(bp, body)
	} else {
		h.putBody(bp, body) // no event refers to the body once decoded
		res = h.handle(ctx, d, ev, k, err)
	}
	if res.status != http.StatusNoContent {
		if res.status == http.StatusInternalServerError && errors.Is(res.err, ErrPermanent) {
			w.Header().Set(HeaderWebhookDelivery, "abort-message")
		}
		writeStatus(w, res.status)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
	h.log(ctx, d, ev, res)
	h.observe(ctx, Observation{Delivery: d, EventType: ev.Type(), Outcome: res.outcome, Status: res.status, Err: res.err, Duration: res.dur, Drift: drift})
}

// Process decodes payload, a delivery verified earlier (by an inbox's
// worker, or taken from any queue), and runs its callback as ServeHTTP
// would: under the callback timeout, with the deduplicator if one is
// configured, with d in the context ([DeliveryFromContext]). It returns nil
// when the callback returned nil, when no callback is registered for the
// event, and for a copy of a message the deduplicator has completed; else
// the callback's error (a panic recovered into one, an overrun wrapping
// [context.DeadlineExceeded]), or an error for a copy in progress elsewhere
// (wrapping [ErrInProgress]) or an unavailable deduplicator. A payload that
// is not valid JSON returns an error wrapping both [ErrInvalidPayload] and
// [ErrPermanent]: retrying cannot fix it. A payload with breaking drift
// goes to [Handler.OnUnknown], else [Handler.OnAny]; with neither, Process
// returns an error wrapping [ErrSchemaDrift], not permanent: a queue that
// retries it succeeds once the library is upgraded.
func (h *Handler) Process(ctx context.Context, d Delivery, payload []byte) error {
	ev, k, drift, err := parse(payload, true, &h.drift)
	if err != nil && !errors.Is(err, ErrSchemaDrift) {
		err = Permanent(err)
		h.observe(ctx, Observation{Delivery: d, Outcome: DeliveryRejected, Err: err})
		return err
	}
	d = withEventID(d, ev)
	ctx = contextWithDelivery(ctx, d)
	h.drift.report(ctx, h.logger, d, drift)
	res := h.handle(ctx, d, ev, k, err)
	h.log(ctx, d, ev, res)
	h.observe(ctx, Observation{Delivery: d, EventType: ev.Type(), Outcome: res.outcome, Err: res.err, Duration: res.dur, Drift: drift})
	return res.err // nil when processed, without a callback, or a copy of a completed message
}

func (h *Handler) observe(ctx context.Context, o Observation) {
	if h.observer != nil {
		h.observer.Observe(ctx, o)
	}
}

// enqueue records a delivery in the inbox.
func (h *Handler) enqueue(ctx context.Context, d Delivery, body []byte) result {
	if err := h.inbox.Enqueue(ctx, d, body); err != nil {
		return result{status: http.StatusServiceUnavailable, outcome: DeliveryFailed, err: fmt.Errorf("inbox: %w", err),
			level: slog.LevelError, msg: "tlwebhook: inbox unavailable, delivery not recorded"}
	}
	return result{status: http.StatusNoContent, outcome: DeliveryEnqueued, level: slog.LevelDebug, msg: "tlwebhook: delivery recorded in the inbox"}
}

// handle runs the callback of a decoded delivery with the deduplicator.
// driftErr, when not nil, is the breaking drift that made ev an
// UnknownEvent: without a callback for it, the delivery fails.
func (h *Handler) handle(ctx context.Context, d Delivery, ev Event, k int, driftErr error) result {
	fn := h.resolve(k)
	if fn == nil && driftErr != nil {
		return result{status: http.StatusInternalServerError, outcome: DeliveryFailed, err: driftErr, level: slog.LevelError,
			msg: "tlwebhook: breaking schema drift and neither OnUnknown nor OnAny is registered: the delivery fails (and is retried) until one is, or tlwebhook is upgraded"}
	}
	if fn == nil {
		return result{status: http.StatusNoContent, outcome: DeliveryProcessed, level: slog.LevelDebug, msg: "tlwebhook: delivery accepted, no callback registered"}
	}
	if h.dedup == nil {
		return h.run(ctx, fn, ev, nil)
	}
	key := d.IdempotencyKey()
	token, res, err := h.dedup.Claim(ctx, key)
	switch {
	case err != nil:
		return result{status: http.StatusServiceUnavailable, outcome: DeliveryFailed, err: fmt.Errorf("deduplicator: %w", err),
			level: slog.LevelError, msg: "tlwebhook: deduplicator unavailable, delivery not processed"}
	case res == ClaimInProgress:
		return result{status: http.StatusConflict, outcome: DeliveryDuplicate, err: ErrInProgress,
			level: slog.LevelInfo, msg: "tlwebhook: duplicate delivery while the first is in progress"}
	case res == ClaimDone:
		return result{status: http.StatusNoContent, outcome: DeliveryDuplicate,
			level: slog.LevelInfo, msg: "tlwebhook: duplicate of a completed delivery, callback skipped"}
	case res != ClaimAcquired:
		return result{status: http.StatusServiceUnavailable, outcome: DeliveryFailed, err: fmt.Errorf("deduplicator returned an invalid result %d", int(res)),
			level: slog.LevelError, msg: "tlwebhook: deduplicator returned an invalid result"}
	}
	return h.run(ctx, fn, ev, &claim{h: h, key: key, token: token})
}

// log logs the result of one delivery with its ids, never its body.
func (h *Handler) log(ctx context.Context, d Delivery, ev Event, res result) {
	if !h.logger.Enabled(ctx, res.level) {
		return
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("delivery_id", truncate(d.ID, 128)))
	if t := ev.Type(); t != "" {
		attrs = append(attrs, slog.String("event_type", truncate(string(t), 128)))
	}
	if d.EventID != "" {
		attrs = append(attrs, slog.String("event_id", truncate(d.EventID, 128)))
	}
	if res.err != nil && res.outcome == DeliveryFailed {
		attrs = append(attrs, slog.String("error", res.err.Error()))
		if errors.Is(res.err, ErrPermanent) {
			attrs = append(attrs, slog.Bool("permanent", true))
		}
		var pe *panicError
		if errors.As(res.err, &pe) {
			attrs = append(attrs, slog.String("stack", string(pe.stack)))
		}
	}
	h.logger.LogAttrs(ctx, res.level, res.msg, attrs...)
}

// bodyPool recycles the Handler's body buffers (*[]byte).
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody is the capacity of the largest body buffer kept for reuse.
const maxPooledBody = 64 << 10

func (h *Handler) putBody(bp *[]byte, body []byte) {
	if cap(body) <= maxPooledBody {
		*bp = body[:0]
		bodyPool.Put(bp)
	}
}
