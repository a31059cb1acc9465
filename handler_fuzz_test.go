package tlwebhook_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	tl "github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/internal/everycallback"
)

// Secrets of the fuzzed handler: the endpoint's secret, a second secret it
// also accepts (rotation), and a secret it does not know.
const (
	fuzzSecret      = "whsec_x8bO1Ks0FJ1U4HDpvBqrzgmHyqTjPv3lFZfZdDZEutc="
	fuzzSecondary   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	fuzzForeign     = "whsec_3u0aF1ydQa6y9UjWc8pNRPAeK6bY1Qm1mXkzT3ZT4xk="
	fuzzSmallLimit  = 256
	fuzzMaxEntries  = 64 // the verifier's documented cap on signature entries
	fuzzAllowedAddr = "44.228.126.217:443"
	fuzzOtherAddr   = "198.51.100.7:1234"
)

// Bits of FuzzHandler's mode argument. The fuzzer mutates mode like any other
// input, so every combination is reachable.
const (
	fuzzSigMask      = 0x7 // bits 0-2: how the signature header is built (fuzzSig*)
	fuzzTSComputed   = 1 << 3
	fuzzHeaderShift  = 4 // bits 4-5: which header names carry the signature (fuzzHeader*)
	fuzzChunked      = 1 << 6
	fuzzSmallBody    = 1 << 7
	fuzzCallbackMask = 3 << 8 // bits 8-9: what callbacks return (fuzzCallback*)
	fuzzAllowlist    = 1 << 10
	fuzzFromAllowed  = 1 << 11
	fuzzDropID       = 1 << 12
	fuzzDropTS       = 1 << 13
)

// Signature modes (mode & fuzzSigMask).
const (
	fuzzSigRaw         = iota // the fuzzed header value as is
	fuzzSigValid              // svix's signature over the request
	fuzzSigMutated            // svix's signature with one byte changed
	fuzzSigAfterRaw           // the fuzzed value, a space, svix's signature
	fuzzSigOtherVer           // svix's signature under a version other than v1
	fuzzSigThenRaw            // svix's signature, a space, the fuzzed value
	fuzzSigForeign            // signed with a secret the handler does not know
	fuzzSigSecondary          // signed with the handler's second secret
	fuzzSigModeCount          // number of modes
	fuzzCallbackOK     = 0    // callbacks return nil
	fuzzCallbackErr    = 1    // callbacks return an error
	fuzzCallbackPanic  = 2    // callbacks panic
	fuzzCallbackPerm   = 3    // callbacks return a Permanent error
	fuzzHeaderSvix     = 0    // svix-* headers
	fuzzHeaderWebhook  = 1    // webhook-* headers
	fuzzHeaderBoth     = 2    // svix-* with the fuzzed signature, webhook-* with the computed one
	fuzzHeaderRepeated = 3    // svix-signature twice: the fuzzed value, then the computed one
)

// fuzzStatuses are the answers DESIGN.md and the Handler's documentation
// allow for a handler configured like the fuzzed one: no deduplicator (so
// no 409 or deduplicator 503) and callbacks that return at once (so no
// timeout 503).
var fuzzStatuses = map[int]bool{
	http.StatusNoContent:             true,
	http.StatusOK:                    true,
	http.StatusBadRequest:            true,
	http.StatusUnauthorized:          true,
	http.StatusForbidden:             true,
	http.StatusMethodNotAllowed:      true,
	http.StatusRequestEntityTooLarge: true,
	http.StatusInternalServerError:   true,
}

// FuzzHandler sends random requests (method, signature headers, body, source
// address) through Handler.ServeHTTP and checks that the handler never
// panics, answers only with documented statuses, and runs a callback only
// for requests that Svix's own Go library verifies. Signatures are made by
// svix's Sign over the fuzzed id, timestamp and body, so that valid and
// nearly valid deliveries are explored as well as garbage.
func FuzzHandler(f *testing.F) {
	now := time.Now().Unix()
	for _, file := range []string{"tensorlake.document_ingestion.job.completed.json", "tensorlake.sandbox.failed.json", "tlwebhook.workflow.completed.json", "unknown_event_type.json", "tensorlake.application.request.failed.json"} {
		body, err := os.ReadFile(fixtureFile(file))
		require.NoError(f, err)
		for sig := uint16(0); sig < fuzzSigModeCount; sig++ {
			f.Add("POST", "msg_2Lh9KPqQ", "", "v1,bm90IGEgc2lnbmF0dXJl", body, sig|fuzzTSComputed, int32(0), uint16(7))
		}
	}
	f.Add("POST", "msg_1", strconv.FormatInt(now, 10), "v1,"+strings.Repeat("A", 43)+"=", []byte(`{"status":"pending","job_id":"parse_1","created_at":"2023-10-01T12:00:00Z"}`), uint16(fuzzSigRaw), int32(0), uint16(0))
	f.Add("GET", "msg_1", "", "", []byte(`{}`), uint16(fuzzSigValid|fuzzTSComputed), int32(0), uint16(0))
	f.Add("POST", "msg_1", "", "v2,abc v1a,xyz", []byte(`{}`), uint16(fuzzSigAfterRaw|fuzzTSComputed|fuzzHeaderRepeated<<fuzzHeaderShift), int32(-400), uint16(0))
	f.Add("POST", "msg_1", "", "v1,abc", []byte(`[1,2]`), uint16(fuzzSigValid|fuzzTSComputed|fuzzHeaderWebhook<<fuzzHeaderShift|fuzzChunked), int32(200), uint16(0))
	f.Add("POST", "msg_1", "", "", []byte(`{"event_type":"tensorlake.sandbox.failed","event_version":1,"data":3}`), uint16(fuzzSigValid|fuzzTSComputed|fuzzCallbackPanic<<8), int32(0), uint16(0))
	f.Add("POST", "msg_1", "", "", []byte(`{"a":1}`), uint16(fuzzSigValid|fuzzTSComputed|fuzzAllowlist), int32(0), uint16(0))
	f.Add("POST", "msg_1", "", "", []byte(`{"a":1}`), uint16(fuzzSigValid|fuzzTSComputed|fuzzAllowlist|fuzzFromAllowed|fuzzCallbackErr<<8), int32(0), uint16(0))
	f.Add("POST", "msg_1", "+"+strconv.FormatInt(now, 10), "", []byte(`{"a":1}`), uint16(fuzzSigValid|fuzzSmallBody), int32(0), uint16(0))

	whs := make([]*svix.Webhook, 0, 3)
	for _, s := range []string{fuzzSecret, fuzzSecondary, fuzzForeign} {
		wh, err := svix.NewWebhook(s)
		require.NoError(f, err)
		whs = append(whs, wh)
	}

	f.Fuzz(func(t *testing.T, method, id, ts, sigHdr string, body []byte, mode uint16, tsOffset int32, mut uint16) {
		runFuzzHandler(t, whs, method, id, ts, sigHdr, body, mode, tsOffset, mut)
	})
}

func runFuzzHandler(t *testing.T, whs []*svix.Webhook, method, id, ts, sigHdr string, body []byte, mode uint16, tsOffset int32, mut uint16) {
	now := time.Now()
	if mode&fuzzTSComputed != 0 {
		ts = strconv.FormatInt(now.Unix()+int64(tsOffset), 10)
	}
	// Keep clear of the tolerance's edges: svix reads its own clock a
	// moment after the handler read its clock.
	if v, err := strconv.ParseInt(ts, 10, 64); err == nil && nearToleranceEdge(v, now) {
		t.Skip("timestamp within seconds of the tolerance edge")
	}

	// The signature svix computes for this id, timestamp and body.
	signTS, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		signTS = now.Unix()
	}
	signer := whs[0]
	switch mode & fuzzSigMask {
	case fuzzSigForeign:
		signer = whs[2]
	case fuzzSigSecondary:
		signer = whs[1]
	}
	computed, err := signer.Sign(id, time.Unix(signTS, 0), body)
	require.NoError(t, err)
	var sig string
	switch mode & fuzzSigMask {
	case fuzzSigRaw:
		sig = sigHdr
	case fuzzSigValid, fuzzSigForeign, fuzzSigSecondary:
		sig = computed
	case fuzzSigMutated:
		b := []byte(computed)
		i := int(mut) % len(b)
		b[i] ^= byte(mut>>8) | 1
		sig = string(b)
	case fuzzSigAfterRaw:
		sig = sigHdr + " " + computed
	case fuzzSigOtherVer:
		sig = "v2" + strings.TrimPrefix(computed, "v1")
		if mut&1 == 1 {
			sig = "v1a" + strings.TrimPrefix(computed, "v1")
		}
	case fuzzSigThenRaw:
		sig = computed + " " + sigHdr
	}

	h := http.Header{}
	setIf := func(name, value string, skip bool) {
		if !skip {
			h.Add(name, value)
		}
	}
	dropID, dropTS := mode&fuzzDropID != 0, mode&fuzzDropTS != 0
	switch (mode >> fuzzHeaderShift) & 3 {
	case fuzzHeaderSvix:
		setIf(tl.HeaderSvixID, id, dropID)
		setIf(tl.HeaderSvixTimestamp, ts, dropTS)
		h.Add(tl.HeaderSvixSignature, sig)
	case fuzzHeaderWebhook:
		setIf(tl.HeaderWebhookID, id, dropID)
		setIf(tl.HeaderWebhookTimestamp, ts, dropTS)
		h.Add(tl.HeaderWebhookSignature, sig)
	case fuzzHeaderBoth:
		setIf(tl.HeaderSvixID, id, dropID)
		setIf(tl.HeaderSvixTimestamp, ts, dropTS)
		h.Add(tl.HeaderSvixSignature, sigHdr)
		h.Add(tl.HeaderWebhookID, id)
		h.Add(tl.HeaderWebhookTimestamp, ts)
		h.Add(tl.HeaderWebhookSignature, sig)
	case fuzzHeaderRepeated:
		setIf(tl.HeaderSvixID, id, dropID)
		setIf(tl.HeaderSvixTimestamp, ts, dropTS)
		h.Add(tl.HeaderSvixSignature, sigHdr)
		h.Add(tl.HeaderSvixSignature, sig)
	}

	// The independent verdict: does svix's Verify accept the request under
	// a secret the handler accepts? Svix reads the same header map.
	svixOK := whs[0].Verify(body, h) == nil || whs[1].Verify(body, h) == nil

	limit := tl.DefaultMaxBodyBytes
	if mode&fuzzSmallBody != 0 {
		limit = fuzzSmallLimit
	}
	opts := []tl.HandlerOption{
		tl.WithSecrets(fuzzSecondary),
		tl.WithMaxBodyBytes(limit),
		tl.WithLogger(slog.New(slog.DiscardHandler)),
	}
	allowlist := mode&fuzzAllowlist != 0
	if allowlist {
		opts = append(opts, tl.WithAllowedSources(tl.SvixSourcesUS()...))
	}
	handler, err := tl.NewHandler(fuzzSecret, opts...)
	require.NoError(t, err)

	var calls atomic.Int32
	cbMode := (mode & fuzzCallbackMask) >> 8
	registerAll(handler, func(context.Context) error {
		calls.Add(1)
		switch cbMode {
		case fuzzCallbackErr:
			return errors.New("callback failed")
		case fuzzCallbackPanic:
			panic("callback panicked")
		case fuzzCallbackPerm:
			return tl.Permanent(errors.New("bad event"))
		}
		return nil
	})

	req := &http.Request{
		Method:     method,
		URL:        &url0,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       httpBody(body),
		Host:       "example.com",
		RemoteAddr: fuzzOtherAddr,
	}
	req = req.WithContext(context.Background())
	req.ContentLength = int64(len(body))
	if mode&fuzzChunked != 0 {
		req.ContentLength = -1
	}
	fromAllowed := mode&fuzzFromAllowed != 0
	if fromAllowed {
		req.RemoteAddr = fuzzAllowedAddr
	}

	rec := httptest.NewRecorder()
	require.NotPanics(t, func() { handler.ServeHTTP(rec, req) })
	status := rec.Code
	ran := calls.Load()

	require.Truef(t, fuzzStatuses[status], "undocumented status %d", status)
	require.LessOrEqual(t, ran, int32(1), "a callback ran more than once")
	assert.NotContains(t, rec.Body.String(), strings.TrimPrefix(computed, "v1,"), "response reveals a signature")

	if ran == 1 {
		require.Truef(t, svixOK, "callback ran for a request svix rejects (status %d)", status)
	}
	if status == http.StatusForbidden {
		require.True(t, allowlist && !fromAllowed, "403 without an allowlist or from an allowed address")
	}
	if allowlist && !fromAllowed {
		require.Equal(t, http.StatusForbidden, status, "request from outside the allowlist")
		require.Zero(t, ran)
		return
	}
	if method != http.MethodPost {
		require.Equal(t, http.StatusMethodNotAllowed, status)
		require.Equal(t, http.MethodPost, rec.Header().Get("Allow"))
		require.Zero(t, ran)
		return
	}
	if int64(len(body)) > limit {
		require.Contains(t, []int{http.StatusRequestEntityTooLarge, http.StatusUnauthorized}, status)
		if req.ContentLength >= 0 || svixOK {
			// A declared length is checked first; a streamed body with
			// good headers is read until it passes the limit.
			require.Equal(t, http.StatusRequestEntityTooLarge, status)
		}
		require.Zero(t, ran)
		return
	}
	if !svixOK {
		require.Equal(t, http.StatusUnauthorized, status, "svix rejects the request")
		require.Zero(t, ran)
		return
	}
	if status == http.StatusUnauthorized {
		// Svix tries every entry of the signature header; this verifier
		// stops after the first 64 (bounded work). That is the only
		// accepted way to reject what svix accepts.
		require.Truef(t, overEntryCap(h), "svix accepts, handler answers 401; signature header %q", truncateForLog(sig))
		require.Zero(t, ran)
		return
	}
	_, parseErr := tl.ParseEvent(body)
	if errors.Is(parseErr, tl.ErrInvalidPayload) {
		require.Equal(t, http.StatusBadRequest, status)
		require.Zero(t, ran)
		return
	}
	require.Equal(t, int32(1), ran, "verified event did not reach its callback")
	switch cbMode {
	case fuzzCallbackOK:
		require.Equal(t, http.StatusNoContent, status)
	case fuzzCallbackPerm:
		require.Equal(t, http.StatusInternalServerError, status)
		require.Equal(t, "abort-message", rec.Header().Get(tl.HeaderWebhookDelivery))
	default:
		require.Equal(t, http.StatusInternalServerError, status)
		require.Empty(t, rec.Header().Get(tl.HeaderWebhookDelivery))
	}
}

// url0 is the target of fuzzed requests.
var url0 = url.URL{Path: "/webhooks/tensorlake"}

// nearToleranceEdge reports whether ts lies within a few seconds of either
// edge of the default tolerance around now.
func nearToleranceEdge(ts int64, now time.Time) bool {
	d := ts - now.Unix()
	if d < 0 {
		d = -d
	}
	edge := int64(tl.DefaultTolerance / time.Second)
	return d >= edge-3 && d <= edge+3
}

// overEntryCap reports whether a signature header value of h has more
// entries than the verifier examines.
func overEntryCap(h http.Header) bool {
	for _, name := range []string{tl.HeaderSvixSignature, tl.HeaderWebhookSignature} {
		if v := h.Get(name); strings.Count(v, " ")+1 > fuzzMaxEntries {
			return true
		}
	}
	return false
}

func truncateForLog(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// registerAll registers fn as the callback of every event type.
func registerAll(h *tl.Handler, fn func(context.Context) error) {
	everycallback.Register(h, func(ctx context.Context, _ string, _ tl.Event) error { return fn(ctx) })
}

// httpBody returns a request body reading b.
func httpBody(b []byte) *readCloser { return &readCloser{Reader: bytes.NewReader(b)} }

type readCloser struct{ *bytes.Reader }

func (*readCloser) Close() error { return nil }
