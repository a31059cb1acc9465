package tlwebhook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// The HTTP pipeline: every check of a delivery in order (source address,
// method, declared length, additional authentication, signature headers and
// timestamp), then the body read and the signature check, and the fixed
// answers to requests that fail them. Verification itself is in verify.go
// and knows nothing of HTTP requests.

// Middleware returns a handler that verifies each request before calling
// next. It answers 403 to sources not allowed ([WithAllowedSources]), 405
// (with Allow: POST) to other methods, 413 to bodies over the limit and 401
// to requests that fail additional authentication or whose signature does
// not verify, without calling next. For a verified request, next sees the
// body still readable and the [Delivery] in the request context
// ([DeliveryFromContext]). Decoding is left to next, for example with
// [ParseEvent].
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, d, status, err := v.receive(r, nil)
		if err != nil {
			v.reject(w, r, status, d.ID, err)
			return
		}
		r2 := r.WithContext(contextWithDelivery(r.Context(), d))
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
		next.ServeHTTP(w, r2)
	})
}

// receive runs every check of a delivery and returns the verified body, or
// the status to answer and the reason. It writes nothing.
func (v *Verifier) receive(r *http.Request, buf []byte) ([]byte, Delivery, int, error) {
	c := v.http
	if err := c.checkSource(r); err != nil {
		return nil, Delivery{}, http.StatusForbidden, err
	}
	if r.Method != http.MethodPost {
		return nil, Delivery{}, http.StatusMethodNotAllowed, fmt.Errorf("%w: %s", ErrMethodNotAllowed, truncate(r.Method, 32))
	}
	if r.ContentLength > v.maxBody {
		return nil, Delivery{}, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: declared %d bytes, limit %d", ErrPayloadTooLarge, r.ContentLength, v.maxBody)
	}
	if len(c.auth) > 0 {
		if err := c.checkAuth(r.Header); err != nil {
			return nil, Delivery{}, http.StatusUnauthorized, err
		}
	}
	sh, err := v.checkHeaders(r.Header)
	if err != nil {
		return nil, Delivery{ID: sh.id}, http.StatusUnauthorized, err
	}
	body, err := readBody(r, v.maxBody, buf)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, ErrPayloadTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		return nil, Delivery{ID: sh.id}, status, err
	}
	if err := v.checkSignature(sh, body); err != nil {
		return nil, Delivery{ID: sh.id}, http.StatusUnauthorized, v.explain(r, sh, body, err)
	}
	return body, Delivery{ID: sh.id, Timestamp: time.Unix(sh.timestamp, 0)}, 0, nil
}

// Fixed, short response bodies: details go to the logger only.
var statusText = map[int]string{
	http.StatusMethodNotAllowed:      "method not allowed",
	http.StatusRequestEntityTooLarge: "payload too large",
	http.StatusUnauthorized:          "invalid webhook signature",
	http.StatusBadRequest:            "invalid webhook payload",
	http.StatusInternalServerError:   "webhook processing failed",
	http.StatusServiceUnavailable:    "webhook processing unavailable, retry later",
	http.StatusConflict:              "delivery already in progress",
	http.StatusForbidden:             "source address not allowed",
}

// unauthorizedText gives each reason for a 401 its own fixed text.
var unauthorizedText = []struct {
	err  error
	text string
}{
	{ErrMissingHeaders, "missing webhook signature headers"},
	{ErrInvalidHeaders, "malformed webhook signature headers"},
	{ErrTimestampTooOld, "webhook timestamp too old"},
	{ErrTimestampTooNew, "webhook timestamp too new"},
	{ErrUnauthorized, "webhook authentication failed"},
	{ErrNoMatchingSignature, "invalid webhook signature"},
}

func writeStatus(w http.ResponseWriter, status int) {
	http.Error(w, statusText[status], status)
}

// reject answers a request that failed a check and logs why: at warn level
// for failed authentication or signatures (a wrong secret shows up here),
// at info level otherwise. At most rejectLogsPerSecond records a second are
// written per Verifier; the next one written says how many were dropped, so
// that a flood of forged requests cannot turn into a flood of log bytes.
func (v *Verifier) reject(w http.ResponseWriter, r *http.Request, status int, id string, err error) {
	text := statusText[status]
	level := slog.LevelInfo
	if status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	if status == http.StatusUnauthorized {
		level = slog.LevelWarn
		for _, u := range unauthorizedText {
			if errors.Is(err, u.err) {
				text = u.text
				break
			}
		}
	}
	http.Error(w, text, status)
	if !v.logger.Enabled(r.Context(), level) {
		return
	}
	ok, dropped := v.logs.allow(time.Now())
	if dropped > 0 {
		v.logger.LogAttrs(r.Context(), slog.LevelWarn, "tlwebhook: rejection log records suppressed",
			slog.Int64("suppressed", dropped), slog.Int("limit_per_second", rejectLogsPerSecond))
	}
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.Int("status", status), slog.String("error", err.Error())}
	if id != "" {
		attrs = append(attrs, slog.String("delivery_id", truncate(id, 128)))
	}
	v.logger.LogAttrs(r.Context(), level, "tlwebhook: delivery rejected", attrs...)
}

// truncate bounds attacker-controlled strings before they reach logs.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// readChunk bounds the first allocation for a body, whatever length the
// request declares: memory follows the bytes received.
const readChunk = 16 << 10

// readBody reads the request body into buf, failing with an error wrapping
// ErrPayloadTooLarge as soon as more than limit bytes arrive; it never reads
// more than limit+1 bytes. The buffer starts at the declared length when
// that is small, else at readChunk, and doubles as bytes arrive, so a
// request that declares a large body and sends little costs little.
func readBody(r *http.Request, limit int64, buf []byte) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return buf[:0], nil
	}
	size := int64(512)
	if r.ContentLength > 0 {
		size = min(r.ContentLength+1, readChunk)
	}
	size = min(size, limit+1)
	if int64(cap(buf)) < size {
		buf = make([]byte, 0, size)
	}
	buf = buf[:0]
	lr := io.LimitedReader{R: r.Body, N: limit + 1}
	for {
		if len(buf) == cap(buf) {
			grow := min(int64(cap(buf)), limit+1-int64(len(buf)))
			buf = append(buf[:cap(buf)], make([]byte, max(grow, 1))...)[:len(buf)]
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
			return nil, fmt.Errorf("%w: reading body: %w", ErrInvalidPayload, err)
		}
	}
}

// errBodyTooLarge is returned by readBody when the body exceeds the limit.
var errBodyTooLarge = fmt.Errorf("%w: body exceeds the limit", ErrPayloadTooLarge)

// rejectLogsPerSecond bounds the rejection log records of one Verifier.
const rejectLogsPerSecond = 10

// A logLimiter lets through rejectLogsPerSecond records per second and
// counts the rest.
type logLimiter struct {
	mu         sync.Mutex
	second     int64
	n          int
	suppressed int64
}

// allow reports whether a record may be written now, and how many were
// suppressed since the last one written (to be reported first).
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int64) {
	sec := now.Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec != l.second {
		l.second, l.n = sec, 0
	}
	if l.n >= rejectLogsPerSecond {
		l.suppressed++
		return false, 0
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// full reports whether a record written now would be suppressed.
func (l *logLimiter) full(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return now.Unix() == l.second && l.n >= rejectLogsPerSecond
}
