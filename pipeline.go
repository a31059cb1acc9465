package tlwebhook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The HTTP pipeline: every check of a delivery in order (source address,
// method, declared length, additional authentication, signature headers and
// timestamp), then the body read and the signature check. Verification
// itself is in verify.go and knows nothing of HTTP requests; the answers to
// requests that fail are in answer.go, the diagnosis of a failed signature
// in diagnose.go.

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
