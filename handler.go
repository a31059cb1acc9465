package tlwebhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync/atomic"
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
	v, err := NewVerifier(secret, opts...)
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
	body, d, ok := h.v.receive(w, r)
	if !ok {
		return
	}
	ev, err := ParseEvent(body)
	if err != nil {
		h.v.reject(w, r, http.StatusBadRequest, d.ID, err)
		return
	}
	if env := envelopeOf(ev); env != nil {
		d.EventID = env.EventID
	}
	ctx := contextWithDelivery(r.Context(), d)
	ran, err := h.dispatch(ctx, ev)
	log := h.v.cfg.logger
	attrs := []slog.Attr{slog.String("delivery_id", truncate(d.ID, 128)), slog.String("event_type", truncate(string(ev.Type()), 128))}
	if d.EventID != "" {
		attrs = append(attrs, slog.String("event_id", truncate(d.EventID, 128)))
	}
	if err != nil {
		writeStatus(w, http.StatusInternalServerError)
		attrs = append(attrs, slog.String("error", err.Error()))
		var pe *panicError
		if errors.As(err, &pe) {
			attrs = append(attrs, slog.String("stack", string(pe.stack)))
		}
		log.LogAttrs(ctx, slog.LevelError, "tlwebhook: callback failed", attrs...)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	attrs = append(attrs, slog.Bool("handled", ran))
	log.LogAttrs(ctx, slog.LevelDebug, "tlwebhook: delivery accepted", attrs...)
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

// dispatch calls the callback registered for ev's type. It reports whether
// one ran, and its error; a panic is recovered into a *panicError.
func (h *Handler) dispatch(ctx context.Context, ev Event) (bool, error) {
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
	return false, fmt.Errorf("tlwebhook: unhandled event type %T", ev)
}

func call[T any](ctx context.Context, cb *callback[T], ev *T) (ran bool, err error) {
	fn := cb.fn.Load()
	if fn == nil {
		return false, nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return true, (*fn)(ctx, ev)
}

// panicError is a recovered callback panic.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("callback panicked: %v", e.value) }

// errBodyTooLarge is returned by readBody when the body exceeds the limit.
var errBodyTooLarge = fmt.Errorf("%w: body exceeds the limit", ErrPayloadTooLarge)

func isTooLarge(err error) bool { return errors.Is(err, ErrPayloadTooLarge) }

// readBody reads the request body, failing with errBodyTooLarge as soon as
// more than limit bytes arrive; it never reads more than limit+1 bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
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
	buf := make([]byte, 0, size)
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
