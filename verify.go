package tlwebhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A Delivery describes one verified delivery attempt.
type Delivery struct {
	// ID is the message id from the svix-id (or webhook-id) header. It is
	// the same on every retry and manual resend of one message.
	ID string
	// Timestamp is the time the attempt was signed, from the svix-timestamp
	// (or webhook-timestamp) header.
	Timestamp time.Time
	// EventID is the event_id of a lifecycle envelope, Tensorlake's
	// recommended deduplication key. [Handler] sets it after decoding; it is
	// empty for payloads that carry none and for [Verifier.Verify].
	EventID string
}

// IdempotencyKey returns the key that identifies the message this delivery
// belongs to, for deduplication: the payload's event_id when it has one,
// else the message id.
func (d Delivery) IdempotencyKey() string {
	if d.EventID != "" {
		return d.EventID
	}
	return d.ID
}

type deliveryKey struct{}

// DeliveryFromContext returns the [Delivery] that [Verifier.Middleware] or
// [Handler] stored in a request's context.
func DeliveryFromContext(ctx context.Context) (Delivery, bool) {
	d, ok := ctx.Value(deliveryKey{}).(*Delivery)
	if !ok {
		return Delivery{}, false
	}
	return *d, true
}

// deliveryCtx carries a Delivery in one allocation (context.WithValue
// takes two: the context and the boxed Delivery).
type deliveryCtx struct {
	context.Context
	d Delivery
}

func (c *deliveryCtx) Value(key any) any {
	if _, ok := key.(deliveryKey); ok {
		return &c.d
	}
	return c.Context.Value(key)
}

func contextWithDelivery(ctx context.Context, d Delivery) context.Context {
	return &deliveryCtx{Context: ctx, d: d}
}

// A Verifier checks the Svix signature of deliveries. It is safe for
// concurrent use. Create one with [NewVerifier].
type Verifier struct {
	cfg  *config
	keys []*macKey
}

// macKey is one accepted secret with a pool of pre-keyed HMAC states.
type macKey struct {
	pool sync.Pool // of *macState
}

// macState is a reusable HMAC computation with its scratch buffers, so that
// verifying a valid delivery allocates nothing.
type macState struct {
	h      hash.Hash
	prefix []byte
	sum    [sha256.Size]byte
	enc    [sigLen]byte
}

// sigLen is the length of a base64-encoded HMAC-SHA256.
const sigLen = 44

// maxSignatureEntries bounds the work spent on one signature header.
const maxSignatureEntries = 64

// NewVerifier returns a [Verifier] for the given endpoint secret (as shown by
// Tensorlake, with or without the whsec_ prefix). It returns an error
// wrapping [ErrInvalidSecret] if a secret does not decode or is shorter than
// 16 bytes.
func NewVerifier(secret string, opts ...Option) (*Verifier, error) {
	cfg, err := newConfig(secret, opts)
	if err != nil {
		return nil, err
	}
	if len(cfg.handlerOnly) > 0 {
		return nil, fmt.Errorf("tlwebhook: %s applies to Handler only, not to Verifier", cfg.handlerOnly[0])
	}
	return newVerifier(cfg)
}

func newVerifier(cfg *config) (*Verifier, error) {
	v := &Verifier{cfg: cfg}
	for i, s := range cfg.secrets {
		key, err := decodeSecret(s)
		if err != nil {
			if len(cfg.secrets) > 1 {
				return nil, fmt.Errorf("secret %d: %w", i+1, err)
			}
			return nil, err
		}
		v.keys = append(v.keys, newMACKey(key))
	}
	// Keep no copy of the secrets beyond the HMAC states: nothing that
	// prints or dumps the verifier can reach them.
	clear(cfg.secrets)
	cfg.secrets = nil
	return v, nil
}

func decodeSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "whsec_")
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidSecret)
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64 (expected whsec_ followed by base64)", ErrInvalidSecret)
	}
	if len(key) < minKeyBytes {
		return nil, fmt.Errorf("%w: decodes to %d bytes, want at least %d", ErrInvalidSecret, len(key), minKeyBytes)
	}
	return key, nil
}

func newMACKey(key []byte) *macKey {
	k := &macKey{}
	k.pool.New = func() any {
		return &macState{h: hmac.New(sha256.New, key), prefix: make([]byte, 0, 64)}
	}
	return k
}

// String describes the verifier without revealing any key.
func (v Verifier) String() string {
	return fmt.Sprintf("tlwebhook.Verifier{secrets: %d, tolerance: %v, maxBodyBytes: %d}",
		len(v.keys), v.cfg.tolerance, v.cfg.maxBodyBytes)
}

// GoString is like String, so that %#v reveals no key either.
func (v Verifier) GoString() string { return v.String() }

// LogValue is like String, for [log/slog].
func (v Verifier) LogValue() slog.Value { return slog.StringValue(v.String()) }

// sigHeaders are the three signature headers of one delivery.
type sigHeaders struct {
	id        string
	timestamp int64
	signature string
}

// Canonical forms of the header names, for direct map access.
const (
	canonSvixID           = "Svix-Id"
	canonSvixTimestamp    = "Svix-Timestamp"
	canonSvixSignature    = "Svix-Signature"
	canonWebhookID        = "Webhook-Id"
	canonWebhookTimestamp = "Webhook-Timestamp"
	canonWebhookSignature = "Webhook-Signature"
)

func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// parseHeaders reads the signature headers. Like Svix's libraries it uses
// the svix-* set when all three are present and non-empty, else the
// webhook-* set.
func parseHeaders(h http.Header) (sigHeaders, error) {
	id, ts, sig := first(h, canonSvixID), first(h, canonSvixTimestamp), first(h, canonSvixSignature)
	if id == "" || ts == "" || sig == "" {
		id, ts, sig = first(h, canonWebhookID), first(h, canonWebhookTimestamp), first(h, canonWebhookSignature)
		if id == "" || ts == "" || sig == "" {
			return sigHeaders{}, ErrMissingHeaders
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return sigHeaders{id: id}, fmt.Errorf("%w: timestamp is not a decimal integer of Unix seconds", ErrInvalidHeaders)
	}
	return sigHeaders{id: id, timestamp: t, signature: sig}, nil
}

// checkTimestamp applies the tolerance in both directions, with the same
// edges as Svix's libraries: exactly the tolerance is accepted.
func (v *Verifier) checkTimestamp(ts int64) error {
	now := v.cfg.now()
	t := time.Unix(ts, 0)
	if d := now.Sub(t); d > v.cfg.tolerance {
		return fmt.Errorf("%w: signed %s ago, tolerance %v", ErrTimestampTooOld, roundDuration(d), v.cfg.tolerance)
	}
	if ts > now.Add(v.cfg.tolerance).Unix() {
		return fmt.Errorf("%w: signed %s in the future, tolerance %v", ErrTimestampTooNew, roundDuration(t.Sub(now)), v.cfg.tolerance)
	}
	return nil
}

func roundDuration(d time.Duration) string {
	if d >= time.Second {
		d = d.Round(time.Second)
	}
	return d.String()
}

// checkHeaders performs every check that needs no body.
func (v *Verifier) checkHeaders(h http.Header) (sigHeaders, error) {
	sh, err := parseHeaders(h)
	if err != nil {
		return sh, err
	}
	if err := v.checkTimestamp(sh.timestamp); err != nil {
		return sh, err
	}
	if !hasCandidate(sh.signature) {
		return sh, fmt.Errorf("%w: header has no v1 signature", ErrNoMatchingSignature)
	}
	return sh, nil
}

// Verify checks that payload, the raw request body, is signed by one of the
// verifier's secrets according to header, and that the signature's timestamp
// is within the tolerance. It returns the [Delivery] on success. Errors wrap
// one of [ErrMissingHeaders], [ErrInvalidHeaders], [ErrTimestampTooOld],
// [ErrTimestampTooNew], [ErrNoMatchingSignature] or [ErrPayloadTooLarge].
//
// The payload must be the body exactly as received: re-serialised JSON does
// not verify. Verify does not allocate for a valid delivery.
func (v *Verifier) Verify(payload []byte, header http.Header) (Delivery, error) {
	if int64(len(payload)) > v.cfg.maxBodyBytes {
		return Delivery{}, fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(payload), v.cfg.maxBodyBytes)
	}
	sh, err := v.checkHeaders(header)
	if err != nil {
		return Delivery{}, err
	}
	if err := v.checkSignature(sh, payload); err != nil {
		return Delivery{}, err
	}
	return Delivery{ID: sh.id, Timestamp: time.Unix(sh.timestamp, 0)}, nil
}

// nextEntry splits the signature header the way Svix's libraries do: entries
// separated by single spaces, each "version,signature[,ignored...]".
func nextEntry(s string) (version, sig, rest string, ok bool) {
	entry := s
	if i := strings.IndexByte(s, ' '); i >= 0 {
		entry, rest = s[:i], s[i+1:]
	}
	i := strings.IndexByte(entry, ',')
	if i < 0 {
		return "", "", rest, false
	}
	version, sig = entry[:i], entry[i+1:]
	if j := strings.IndexByte(sig, ','); j >= 0 {
		sig = sig[:j]
	}
	return version, sig, rest, true
}

// hasCandidate reports whether the header has a v1 entry that could match,
// so that a request without one costs no HMAC.
func hasCandidate(header string) bool {
	rest := header
	for n := 0; n < maxSignatureEntries && rest != ""; n++ {
		version, sig, r, ok := nextEntry(rest)
		rest = r
		if ok && version == "v1" && len(sig) == sigLen {
			return true
		}
	}
	return false
}

// checkSignature computes the expected signature under each key (one HMAC
// per key) and compares it in constant time with every v1 entry.
func (v *Verifier) checkSignature(sh sigHeaders, payload []byte) error {
	for _, k := range v.keys {
		st := k.pool.Get().(*macState)
		st.h.Reset()
		st.prefix = append(st.prefix[:0], sh.id...)
		st.prefix = append(st.prefix, '.')
		st.prefix = strconv.AppendInt(st.prefix, sh.timestamp, 10)
		st.prefix = append(st.prefix, '.')
		st.h.Write(st.prefix)
		st.h.Write(payload)
		st.h.Sum(st.sum[:0])
		base64.StdEncoding.Encode(st.enc[:], st.sum[:])
		matched := matchAny(sh.signature, st.enc[:])
		if cap(st.prefix) <= 1024 {
			k.pool.Put(st)
		}
		if matched {
			return nil
		}
	}
	return ErrNoMatchingSignature
}

// matchAny compares expected with every v1 entry of header, in constant
// time per entry.
func matchAny(header string, expected []byte) bool {
	found := 0
	rest := header
	for n := 0; n < maxSignatureEntries && rest != ""; n++ {
		version, sig, r, ok := nextEntry(rest)
		rest = r
		if ok && version == "v1" {
			found |= constantTimeEqual(sig, expected)
		}
	}
	return found == 1
}

func constantTimeEqual(a string, b []byte) int {
	if len(a) != len(b) {
		return 0
	}
	var x byte
	for i := 0; i < len(b); i++ {
		x |= a[i] ^ b[i]
	}
	return subtle.ConstantTimeByteEq(x, 0)
}

// Middleware returns a handler that verifies each request before calling
// next. It answers 405 (with Allow: POST) to other methods, 413 to bodies
// over the limit and 401 to requests whose signature does not verify, without
// calling next. For a verified request, next sees the body still readable and
// the [Delivery] in the request context ([DeliveryFromContext]). Decoding is
// left to next, for example with [ParseEvent].
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, d, ok := v.receive(w, r, nil)
		if !ok {
			return
		}
		r2 := r.WithContext(contextWithDelivery(r.Context(), d))
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
		next.ServeHTTP(w, r2)
	})
}

// receive runs every check of a delivery in order: source address, method, declared length,
// headers and timestamp, then reads the body and checks the signature. On
// failure it has written the response and logged the reason.
func (v *Verifier) receive(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, Delivery, bool) {
	if err := v.cfg.checkSource(r); err != nil {
		v.reject(w, r, http.StatusForbidden, "", err)
		return nil, Delivery{}, false
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		v.reject(w, r, http.StatusMethodNotAllowed, "", fmt.Errorf("method %s not allowed", truncate(r.Method, 32)))
		return nil, Delivery{}, false
	}
	if r.ContentLength > v.cfg.maxBodyBytes {
		v.reject(w, r, http.StatusRequestEntityTooLarge, "", fmt.Errorf("%w: declared %d bytes, limit %d", ErrPayloadTooLarge, r.ContentLength, v.cfg.maxBodyBytes))
		return nil, Delivery{}, false
	}
	sh, err := v.checkHeaders(r.Header)
	if err != nil {
		v.reject(w, r, http.StatusUnauthorized, sh.id, err)
		return nil, Delivery{}, false
	}
	body, err := readBody(r, v.cfg.maxBodyBytes, buf)
	if err != nil {
		status := http.StatusBadRequest
		if isTooLarge(err) {
			status = http.StatusRequestEntityTooLarge
		}
		v.reject(w, r, status, sh.id, err)
		return nil, Delivery{}, false
	}
	if err := v.checkSignature(sh, body); err != nil {
		v.reject(w, r, http.StatusUnauthorized, sh.id, err)
		return nil, Delivery{}, false
	}
	return body, Delivery{ID: sh.id, Timestamp: time.Unix(sh.timestamp, 0)}, true
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

func writeStatus(w http.ResponseWriter, status int) {
	http.Error(w, statusText[status], status)
}

func (v *Verifier) reject(w http.ResponseWriter, r *http.Request, status int, id string, err error) {
	writeStatus(w, status)
	attrs := []slog.Attr{slog.Int("status", status), slog.String("error", err.Error())}
	if id != "" {
		attrs = append(attrs, slog.String("delivery_id", truncate(id, 128)))
	}
	v.cfg.logger.LogAttrs(r.Context(), slog.LevelInfo, "tlwebhook: delivery rejected", attrs...)
}

// truncate bounds attacker-controlled strings before they reach logs.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
