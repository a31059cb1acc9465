package tlwebhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// A Handler is an [http.Handler] that receives Tensorlake webhooks: it
// verifies each delivery, decodes it into a typed [Event] and calls the
// callback registered for the event's type. Create one with [NewHandler] and
// register callbacks with its On methods, before or while it serves.
//
// The Handler answers:
//
//   - 204 when the delivery verified and its callback returned nil, or no
//     callback is registered for its type;
//   - 500 when the callback returned an error or panicked (Svix retries);
//     with the header webhook-delivery: abort-message when the error is
//     [Permanent] (Svix stops retrying);
//   - 503 when the callback returned after its deadline ([WithCallbackTimeout]) or
//     the deduplicator failed ([WithDeduplicator]);
//   - 409 when a deduplicator reports the same message in progress;
//   - 405 with Allow: POST for other methods;
//   - 413 when the body is over the limit ([WithMaxBodyBytes]);
//   - 401 when signature headers are missing or malformed, no signature
//     matches, or the timestamp is outside the tolerance;
//   - 400 when the verified body is not a single JSON object, or is a known
//     event whose fields have the wrong JSON type.
//
// Checks that need no body (method, declared length, headers, timestamp) come
// before the body is read. Response bodies are short and fixed; details go to
// the logger ([WithLogger]).
//
// Callbacks receive the request's context, which carries the [Delivery]
// ([DeliveryFromContext]). Svix delivers at least once and in any order: a
// callback may see the same event more than once (use
// [Delivery.IdempotencyKey]) and events out of order (see [Envelope.Compare]).
type Handler struct {
	v *Verifier

	onJobCreated        callback[JobCreated]
	onJobFailed         callback[JobFailed]
	onJobCompleted      callback[JobCompleted]
	onWorkflowCompleted callback[WorkflowCompleted]
	onSandboxEvent      callback[SandboxEvent]
	onApplicationEvent  callback[ApplicationEvent]
	onRequestEvent      callback[RequestEvent]
	onUnknown           callback[UnknownEvent]
}

// callback holds one registered function; it can be replaced while the
// handler serves.
type callback[T any] struct {
	fn atomic.Pointer[func(context.Context, *T) error]
}

func (c *callback[T]) set(fn func(context.Context, *T) error) {
	if fn == nil {
		c.fn.Store(nil)
		return
	}
	c.fn.Store(&fn)
}

// NewHandler returns a [Handler] for the given endpoint secret, with no
// callbacks registered. It returns an error wrapping [ErrInvalidSecret] if a
// secret is not valid; see [NewVerifier].
func NewHandler(secret string, opts ...Option) (*Handler, error) {
	cfg, err := newConfig(secret, opts)
	if err != nil {
		return nil, err
	}
	v, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	return &Handler{v: v}, nil
}

// OnJobCreated registers fn for [JobCreated] events, replacing any earlier
// callback; nil removes it.
func (h *Handler) OnJobCreated(fn func(context.Context, *JobCreated) error) {
	h.onJobCreated.set(fn)
}

// OnJobFailed registers fn for [JobFailed] events, replacing any earlier
// callback; nil removes it.
func (h *Handler) OnJobFailed(fn func(context.Context, *JobFailed) error) {
	h.onJobFailed.set(fn)
}

// OnJobCompleted registers fn for [JobCompleted] events, replacing any
// earlier callback; nil removes it.
func (h *Handler) OnJobCompleted(fn func(context.Context, *JobCompleted) error) {
	h.onJobCompleted.set(fn)
}

// OnWorkflowCompleted registers fn for [WorkflowCompleted] events, replacing
// any earlier callback; nil removes it.
func (h *Handler) OnWorkflowCompleted(fn func(context.Context, *WorkflowCompleted) error) {
	h.onWorkflowCompleted.set(fn)
}

// OnSandboxEvent registers fn for every [SandboxEvent] (all
// tensorlake.sandbox.* types, including ones added later), replacing any
// earlier callback; nil removes it.
func (h *Handler) OnSandboxEvent(fn func(context.Context, *SandboxEvent) error) {
	h.onSandboxEvent.set(fn)
}

// OnApplicationEvent registers fn for every [ApplicationEvent], replacing any
// earlier callback; nil removes it.
func (h *Handler) OnApplicationEvent(fn func(context.Context, *ApplicationEvent) error) {
	h.onApplicationEvent.set(fn)
}

// OnRequestEvent registers fn for every [RequestEvent] (all
// tensorlake.application.request.* types), replacing any earlier callback;
// nil removes it.
func (h *Handler) OnRequestEvent(fn func(context.Context, *RequestEvent) error) {
	h.onRequestEvent.set(fn)
}

// OnUnknown registers fn for [UnknownEvent]s: verified payloads that are none
// of the modelled events. Replaces any earlier callback; nil removes it.
func (h *Handler) OnUnknown(fn func(context.Context, *UnknownEvent) error) {
	h.onUnknown.set(fn)
}

// Verifier returns the [Verifier] the handler uses.
func (h *Handler) Verifier() *Verifier { return h.v }

// String describes the handler without revealing any key.
func (h *Handler) String() string { return "tlwebhook.Handler{" + h.v.String() + "}" }

// GoString is like String, so that %#v reveals no key either.
func (h *Handler) GoString() string { return h.String() }

// LogValue is like String, for [log/slog].
func (h *Handler) LogValue() slog.Value { return slog.StringValue(h.String()) }

// ServeHTTP receives one delivery; see [Handler] for the answers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bp := bodyPool.Get().(*[]byte)
	body, d, ok := h.v.receive(w, r, (*bp)[:0])
	if !ok {
		bodyPool.Put(bp)
		return
	}
	ev, err := ParseEvent(body)
	if cap(body) <= maxPooledBody {
		*bp = body[:0] // no event refers to the body once decoded
		bodyPool.Put(bp)
	}
	if err != nil {
		h.v.reject(w, r, http.StatusBadRequest, d.ID, err)
		return
	}
	if env := envelopeOf(ev); env != nil {
		d.EventID = env.EventID
	}
	ctx := contextWithDelivery(r.Context(), d)
	log := deliveryLog{logger: h.v.cfg.logger, d: d, ev: ev}

	if !h.registered(ev) {
		w.WriteHeader(http.StatusNoContent)
		log.log(ctx, slog.LevelDebug, "tlwebhook: delivery accepted, no callback registered")
		return
	}

	dedup := h.v.cfg.dedup
	var token string
	if dedup != nil {
		var res ClaimResult
		token, res, err = dedup.Claim(ctx, d.IdempotencyKey())
		switch {
		case err != nil:
			writeStatus(w, http.StatusServiceUnavailable)
			log.log(ctx, slog.LevelError, "tlwebhook: deduplicator unavailable, delivery not processed", slog.String("error", err.Error()))
			return
		case res == ClaimInProgress:
			writeStatus(w, http.StatusConflict)
			log.log(ctx, slog.LevelInfo, "tlwebhook: duplicate delivery while the first is in progress")
			return
		case res == ClaimDone:
			w.WriteHeader(http.StatusNoContent)
			log.log(ctx, slog.LevelInfo, "tlwebhook: duplicate of a completed delivery, callback skipped")
			return
		case res != ClaimAcquired:
			writeStatus(w, http.StatusServiceUnavailable)
			log.log(ctx, slog.LevelError, "tlwebhook: deduplicator returned an invalid result", slog.Int("result", int(res)))
			return
		}
	}
	finish := func(ctx context.Context, err error) {
		if dedup == nil {
			return
		}
		// Settle the claim even if the sender has hung up meanwhile: a
		// canceled context here would leave the claim to expire and let a
		// retry run the callback again.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		defer cancel()
		key := d.IdempotencyKey()
		var derr error
		if err == nil {
			derr = dedup.Complete(ctx, key, token)
		} else {
			derr = dedup.Release(ctx, key, token)
		}
		if derr != nil {
			log.log(ctx, slog.LevelError, "tlwebhook: deduplicator update failed", slog.String("error", derr.Error()))
		}
	}

	timedOut, err := h.run(ctx, ev, finish)
	switch {
	case timedOut:
		writeStatus(w, http.StatusServiceUnavailable)
		log.log(ctx, slog.LevelError, "tlwebhook: callback timed out", slog.Duration("timeout", h.v.cfg.callbackTimeout))
	case err != nil:
		attrs := []slog.Attr{slog.String("error", err.Error())}
		if errors.Is(err, ErrPermanent) {
			w.Header().Set(HeaderWebhookDelivery, "abort-message")
			attrs = append(attrs, slog.Bool("permanent", true))
		}
		var pe *panicError
		if errors.As(err, &pe) {
			attrs = append(attrs, slog.String("stack", string(pe.stack)))
		}
		writeStatus(w, http.StatusInternalServerError)
		log.log(ctx, slog.LevelError, "tlwebhook: callback failed", attrs...)
	default:
		w.WriteHeader(http.StatusNoContent)
		log.log(ctx, slog.LevelDebug, "tlwebhook: delivery processed")
	}
}

// settleTimeout bounds the deduplicator update after a callback.
const settleTimeout = 5 * time.Second

// HeaderWebhookDelivery is the response header of Svix's delivery control.
// The [Handler] sets it to "abort-message" when a callback returns a
// [Permanent] error, so that Svix stops retrying that message.
const HeaderWebhookDelivery = "webhook-delivery"

// run calls ev's callback under the callback timeout, then finish with
// its error. The callback runs on the request's goroutine: its context
// carries the deadline, and a callback that returns after the deadline has
// overrun (timedOut), whatever it returned. Running it inline costs no
// goroutine per delivery; a callback that ignores its context delays the
// answer, which Svix treats like a 5xx (it retries, and a deduplicator
// answers 409 to copies until the callback finishes).
func (h *Handler) run(ctx context.Context, ev Event, finish func(context.Context, error)) (timedOut bool, err error) {
	timeout := h.v.cfg.callbackTimeout
	if timeout <= 0 {
		err = h.dispatch(ctx, ev)
		finish(ctx, err)
		return false, err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err = h.dispatch(cctx, ev)
	timedOut = ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded)
	cancel()
	finish(ctx, err)
	if timedOut && err == nil {
		err = context.DeadlineExceeded
	}
	return timedOut, err
}

// registered reports whether a callback is registered for ev's type.
func (h *Handler) registered(ev Event) bool {
	switch ev.(type) {
	case *JobCreated:
		return h.onJobCreated.fn.Load() != nil
	case *JobFailed:
		return h.onJobFailed.fn.Load() != nil
	case *JobCompleted:
		return h.onJobCompleted.fn.Load() != nil
	case *WorkflowCompleted:
		return h.onWorkflowCompleted.fn.Load() != nil
	case *SandboxEvent:
		return h.onSandboxEvent.fn.Load() != nil
	case *ApplicationEvent:
		return h.onApplicationEvent.fn.Load() != nil
	case *RequestEvent:
		return h.onRequestEvent.fn.Load() != nil
	case *UnknownEvent:
		return h.onUnknown.fn.Load() != nil
	}
	return false
}

// deliveryLog logs about one delivery with its ids, never its body.
type deliveryLog struct {
	logger *slog.Logger
	d      Delivery
	ev     Event
}

func (l deliveryLog) log(ctx context.Context, level slog.Level, msg string, extra ...slog.Attr) {
	if !l.logger.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 4+len(extra))
	attrs = append(attrs, slog.String("delivery_id", truncate(l.d.ID, 128)))
	if t := l.ev.Type(); t != "" {
		attrs = append(attrs, slog.String("event_type", truncate(string(t), 128)))
	}
	if l.d.EventID != "" {
		attrs = append(attrs, slog.String("event_id", truncate(l.d.EventID, 128)))
	}
	attrs = append(attrs, extra...)
	l.logger.LogAttrs(ctx, level, msg, attrs...)
}

func envelopeOf(ev Event) *Envelope {
	switch e := ev.(type) {
	case *SandboxEvent:
		return &e.Envelope
	case *ApplicationEvent:
		return &e.Envelope
	case *RequestEvent:
		return &e.Envelope
	case *UnknownEvent:
		return &e.Envelope
	}
	return nil
}

// dispatch calls the callback registered for ev's type, if any, and returns
// its error; a panic is recovered into a *panicError.
func (h *Handler) dispatch(ctx context.Context, ev Event) error {
	switch e := ev.(type) {
	case *JobCreated:
		return call(ctx, &h.onJobCreated, e)
	case *JobFailed:
		return call(ctx, &h.onJobFailed, e)
	case *JobCompleted:
		return call(ctx, &h.onJobCompleted, e)
	case *WorkflowCompleted:
		return call(ctx, &h.onWorkflowCompleted, e)
	case *SandboxEvent:
		return call(ctx, &h.onSandboxEvent, e)
	case *ApplicationEvent:
		return call(ctx, &h.onApplicationEvent, e)
	case *RequestEvent:
		return call(ctx, &h.onRequestEvent, e)
	case *UnknownEvent:
		return call(ctx, &h.onUnknown, e)
	}
	return fmt.Errorf("tlwebhook: unhandled event type %T", ev)
}

func call[T any](ctx context.Context, cb *callback[T], ev *T) (err error) {
	fn := cb.fn.Load()
	if fn == nil {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return (*fn)(ctx, ev)
}

// panicError is a recovered callback panic.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("callback panicked: %v", e.value) }

// bodyPool recycles the Handler's body buffers (*[]byte).
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody is the capacity of the largest body buffer kept for reuse.
const maxPooledBody = 64 << 10

// errBodyTooLarge is returned by readBody when the body exceeds the limit.
var errBodyTooLarge = fmt.Errorf("%w: body exceeds the limit", ErrPayloadTooLarge)

func isTooLarge(err error) bool { return errors.Is(err, ErrPayloadTooLarge) }

// readBody reads the request body, failing with errBodyTooLarge as soon as
// more than limit bytes arrive; it never reads more than limit+1 bytes.
func readBody(r *http.Request, limit int64, buf []byte) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return []byte{}, nil
	}
	size := int64(512)
	if r.ContentLength > 0 && r.ContentLength <= limit {
		size = r.ContentLength + 1
	}
	if size > limit+1 {
		size = limit + 1
	}
	if int64(cap(buf)) < size {
		buf = make([]byte, 0, size)
	}
	lr := io.LimitedReader{R: r.Body, N: limit + 1}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, errBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, errBodyTooLarge
			}
			return nil, fmt.Errorf("reading body: %w", err)
		}
	}
}
