package tlwebhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	tl "github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/internal/testutil"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// forgedShapes are bodies that cost the most to diagnose: each fills about
// size bytes.
func forgedShapes(size int) []struct {
	name string
	body []byte
} {
	deep := func(open, close string) []byte {
		n := size / (len(open) + len(close))
		return []byte(strings.Repeat(open, n) + strings.Repeat(close, n))
	}
	nests := func() []byte {
		// Several nests of depth 1,000 side by side in one array.
		one := strings.Repeat("[", 1000) + strings.Repeat("]", 1000)
		parts := make([]string, max(1, size/(len(one)+1)))
		for i := range parts {
			parts[i] = one
		}
		return []byte("[" + strings.Join(parts, ",") + "]")
	}
	wide := func() []byte {
		var b bytes.Buffer
		b.WriteString("{")
		for i := 0; b.Len() < size-16; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%x":0`, i)
		}
		b.WriteString("}")
		return b.Bytes()
	}
	escaped := func() []byte {
		n := (size - 16) / 6
		return []byte(`{"s":"` + strings.Repeat(`\u003c`, n) + `"}`)
	}
	return []struct {
		name string
		body []byte
	}{
		{"deep arrays", deep("[", "]")},
		{"deep objects", deep(`{"a":`, "}")},
		{"several nests", nests()},
		{"wide object", wide()},
		{"long escaped string", escaped()},
		{"indented sample", tlwebhooktest.Sample("tensorlake.sandbox.failed")},
	}
}

// forgedRequest is a request with a fresh timestamp and a well-formed v1
// entry that matches nothing: all it takes to reach the 401 diagnosis.
func forgedRequest(body []byte) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("svix-id", "msg_forged")
	req.Header.Set("svix-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	req.Header.Set("svix-signature", "v1,"+strings.Repeat("A", 43)+"=")
	return req
}

// TestForgedCost holds every forged request to the rule for unverified
// input: memory at most 16 times the body plus 8 MiB, whatever its shape,
// up to the default limit. Each request goes to a fresh Handler, so that
// the diagnosis, which runs at most once a second per Verifier, runs every
// time.
func TestForgedCost(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	for _, size := range []int{10 << 10, 100 << 10, int(tl.DefaultMaxBodyBytes) - 1} {
		for _, sh := range forgedShapes(size) {
			t.Run(fmt.Sprintf("%s/%d", sh.name, len(sh.body)), func(t *testing.T) {
				var logs testutil.SyncBuffer
				h, err := tl.NewHandler(secret, tl.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
				require.NoError(t, err)
				req := forgedRequest(sh.body)
				rec := httptest.NewRecorder()
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				h.ServeHTTP(rec, req)
				runtime.ReadMemStats(&after)
				assert.Equal(t, http.StatusUnauthorized, rec.Code)
				assert.Contains(t, logs.String(), "no matching signature")
				allocated := after.TotalAlloc - before.TotalAlloc
				bound := 16*uint64(len(sh.body)) + 8<<20
				assert.LessOrEqual(t, allocated, bound, "allocated %d bytes for a %d-byte forged body", allocated, len(sh.body))
			})
		}
	}
}

// TestForgedConcurrent sends sixteen forged nested bodies at once, each to
// its own Handler: together they allocate less than 64 MiB.
func TestForgedConcurrent(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	body := forgedShapes(18 << 10)[0].body
	handlers := make([]*tl.Handler, 16)
	for i := range handlers {
		h, err := tl.NewHandler(secret, tl.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		require.NoError(t, err)
		handlers[i] = h
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	codes := make([]int, len(handlers))
	for i, h := range handlers {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, forgedRequest(body))
			codes[i] = rec.Code
		})
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	for _, c := range codes {
		assert.Equal(t, http.StatusUnauthorized, c)
	}
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20))
}

// reencodings are what middlewares and JSON libraries do to a body, written
// with the standard library (independently of the library's diagnosis):
// the signed body is the sample as Tensorlake's documentation shows it
// (indented, keys in document order), or its compact form.
func reencodings(t *testing.T) []struct {
	name     string
	signed   []byte
	received []byte
	want     string // in the 401's log record
} {
	sample := tlwebhooktest.Sample("tensorlake.sandbox.failed")
	// A value with characters json.Marshal escapes, and a fraction that
	// float64 writes differently.
	sample = bytes.Replace(sample, []byte(`"build-runner"`), []byte(`"build <runner> & co"`), 1)
	var compact bytes.Buffer
	require.NoError(t, json.Compact(&compact, sample))
	indent := func(src []byte, in string) []byte {
		var b bytes.Buffer
		require.NoError(t, json.Indent(&b, src, "", in))
		return b.Bytes()
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal(sample, &m))
	marshalled, err := json.Marshal(m)
	require.NoError(t, err)
	return []struct {
		name     string
		signed   []byte
		received []byte
		want     string
	}{
		{"compacted by a middleware", sample, compact.Bytes(), "verifies once indented with two spaces"},
		{"indented by a middleware", compact.Bytes(), indent(compact.Bytes(), "  "), "verifies once compacted"},
		{"indented with tabs", compact.Bytes(), indent(compact.Bytes(), "\t"), "verifies once compacted"},
		{"trailing newline added", compact.Bytes(), append(bytes.Clone(compact.Bytes()), '\n'), "verifies once without its trailing newline"},
		{"line endings changed", sample, bytes.ReplaceAll(sample, []byte("\n"), []byte("\r\n")), "verifies once with CRLF line endings changed to LF"},
		{"signed sorted, received in document order", marshalled, compact.Bytes(), "json.Marshal"},
		{"json.Marshal of a map[string]any", compact.Bytes(), marshalled, "the form Go's json.Marshal gives a decoded map[string]any"},
		{"json.Marshal of a map[string]any, indented original", sample, marshalled, "the form Go's json.Marshal gives a decoded map[string]any"},
	}
}

// TestRejectionDiagnosis checks that each common re-encoding is named in
// the 401's log record, and by Diagnose, with signatures made by Svix's
// library.
func TestRejectionDiagnosis(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	for _, tt := range reencodings(t) {
		t.Run(tt.name, func(t *testing.T) {
			require.NotEqual(t, tt.signed, tt.received)
			now := time.Now()
			sig, err := wh.Sign("msg_1", now, tt.signed)
			require.NoError(t, err)
			header := http.Header{"Svix-Id": {"msg_1"}, "Svix-Timestamp": {strconv.FormatInt(now.Unix(), 10)}, "Svix-Signature": {sig}}

			var logs testutil.SyncBuffer
			h, err := tl.NewHandler(secret, tl.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			require.NoError(t, err)
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(tt.received))
			req.Header = header.Clone()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, http.StatusUnauthorized, rec.Code)
			assert.Equal(t, "invalid webhook signature\n", rec.Body.String(), "the diagnosis stays in the log")
			assert.Contains(t, logs.String(), tt.want)

			v, err := tl.NewVerifier(secret)
			require.NoError(t, err)
			dg := v.Diagnose(tt.received, header)
			require.ErrorIs(t, dg.Err, tl.ErrNoMatchingSignature)
			assert.Contains(t, dg.Reencoding+" "+strings.Join(dg.Hints, " "), strings.TrimPrefix(tt.want, "verifies once "))
			assert.NotContains(t, strings.Join(dg.Hints, " "), "check the key", "a re-encoding is not a wrong key")

			// The body as signed verifies: the diagnosis named the cause.
			dg = v.Diagnose(tt.signed, header)
			assert.NoError(t, dg.Err)
		})
	}
	t.Run("a wrong secret is not blamed on a re-encoding", func(t *testing.T) {
		body := tlwebhooktest.Sample("tensorlake.sandbox.failed")
		other, err := svix.NewWebhook(tlwebhooktest.NewSecret())
		require.NoError(t, err)
		now := time.Now()
		sig, err := other.Sign("msg_2", now, body)
		require.NoError(t, err)
		v, err := tl.NewVerifier(secret)
		require.NoError(t, err)
		dg := v.Diagnose(body, http.Header{"Svix-Id": {"msg_2"}, "Svix-Timestamp": {strconv.FormatInt(now.Unix(), 10)}, "Svix-Signature": {sig}})
		require.ErrorIs(t, dg.Err, tl.ErrNoMatchingSignature)
		assert.Empty(t, dg.Reencoding)
		assert.Contains(t, strings.Join(dg.Hints, " "), "check the key")
		require.Len(t, dg.Entries, 1)
		assert.Equal(t, tl.SignatureEntry{Version: "v1", Length: 44, WellFormed: true}, dg.Entries[0])
	})
}

// TestRejectionLogsLimited floods one Handler with forged requests: the
// observer sees every one, the log at most ten a second plus one record
// that counts the rest.
func TestRejectionLogsLimited(t *testing.T) {
	var logs testutil.SyncBuffer
	var observed atomic.Int64
	n := 500
	h, err := tl.NewHandler(tlwebhooktest.NewSecret(),
		tl.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		tl.WithObserver(observerFunc(func(o tl.Observation) {
			if o.Outcome == tl.DeliveryRejected {
				observed.Add(1)
			}
		})))
	require.NoError(t, err)
	start := time.Now()
	for range n {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, forgedRequest([]byte(`{"a":1}`)))
		require.Equal(t, http.StatusUnauthorized, rec.Code)
	}
	assert.Equal(t, int64(n), observed.Load(), "the observer sees every request")
	// One more after the window, so that the count of suppressed records is
	// written.
	time.Sleep(time.Until(time.Unix(time.Now().Unix()+1, 0)))
	h.ServeHTTP(httptest.NewRecorder(), forgedRequest([]byte(`{"a":1}`)))
	windows := int(time.Now().Unix()-start.Unix()) + 1 // the seconds the requests spanned
	rejected := strings.Count(logs.String(), `msg="tlwebhook: delivery rejected"`)
	assert.LessOrEqual(t, rejected, 10*windows)
	assert.GreaterOrEqual(t, rejected, 10)
	assert.Contains(t, logs.String(), "rejection log records suppressed")
}

type observerFunc func(tl.Observation)

func (f observerFunc) Observe(_ context.Context, o tl.Observation) { f(o) }

// BenchmarkForged measures what a forged request costs a Handler, by body
// shape and size: "diagnosed" gives each request a fresh Handler so that
// the 401 diagnosis runs every time (the worst case), "flood" sends them
// all to one Handler, where the diagnosis runs at most once a second. A
// valid delivery of the sandbox sample is the yardstick.
func BenchmarkForged(b *testing.B) {
	secret := tlwebhooktest.NewSecret()
	quiet := tl.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.Run("valid sandbox.failed", func(b *testing.B) {
		h, err := tl.NewHandler(secret, quiet)
		require.NoError(b, err)
		signer, err := tlwebhooktest.NewSigner(secret)
		require.NoError(b, err)
		body := tlwebhooktest.Sample("tensorlake.sandbox.failed")
		header := signer.Header(body)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			req.Header = header
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusNoContent {
				b.Fatal(rec.Code)
			}
		}
	})
	for _, size := range []int{10 << 10, int(tl.DefaultMaxBodyBytes) - 1} {
		for _, sh := range forgedShapes(size) {
			for _, mode := range []string{"diagnosed", "flood"} {
				b.Run(fmt.Sprintf("%s/%dKiB/%s", strings.ReplaceAll(sh.name, " ", "_"), size>>10, mode), func(b *testing.B) {
					h, err := tl.NewHandler(secret, quiet)
					require.NoError(b, err)
					b.SetBytes(int64(len(sh.body)))
					b.ReportAllocs()
					for b.Loop() {
						if mode == "diagnosed" {
							b.StopTimer()
							h, _ = tl.NewHandler(secret, quiet)
							b.StartTimer()
						}
						rec := httptest.NewRecorder()
						h.ServeHTTP(rec, forgedRequest(sh.body))
						if rec.Code != http.StatusUnauthorized {
							b.Fatal(rec.Code)
						}
					}
				})
			}
		}
	}
}

// TestDiagnoseHeaders covers what Diagnose tells from the headers alone.
func TestDiagnoseHeaders(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v, err := tl.NewVerifier(tlwebhooktest.NewSecret(), tl.WithClock(func() time.Time { return now }))
	require.NoError(t, err)
	body := []byte(`{}`)
	ts := strconv.FormatInt(now.Add(-time.Minute).Unix(), 10)
	tests := []struct {
		name    string
		header  http.Header
		wantErr error
		check   func(t *testing.T, dg tl.Diagnosis)
	}{
		{"no signature header, timestamp given", http.Header{"Svix-Id": {"msg_1"}, "Svix-Timestamp": {ts}}, tl.ErrMissingHeaders, func(t *testing.T, dg tl.Diagnosis) {
			assert.Equal(t, []string{"svix-signature"}, dg.Missing)
			assert.Equal(t, time.Minute, dg.Age, "the timestamp is read although the set is incomplete")
			assert.Equal(t, "msg_1", dg.Delivery.ID)
		}},
		{"webhook-* set", http.Header{"Webhook-Id": {"msg_2"}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {"v1,x"}}, tl.ErrNoMatchingSignature, func(t *testing.T, dg tl.Diagnosis) {
			assert.Equal(t, [3]string{"webhook-id", "webhook-timestamp", "webhook-signature"}, dg.Headers)
			assert.Empty(t, dg.Missing)
		}},
		{"entries of every kind", http.Header{"Svix-Id": {"msg_3"}, "Svix-Timestamp": {ts}, "Svix-Signature": {"v1," + strings.Repeat("A", 43) + "= v2,abc novalue v1a,short"}}, tl.ErrNoMatchingSignature, func(t *testing.T, dg tl.Diagnosis) {
			assert.Equal(t, []tl.SignatureEntry{
				{Version: "v1", Length: 44, WellFormed: true},
				{Version: "v2", Length: 3},
				{Length: 7},
				{Version: "v1a", Length: 5},
			}, dg.Entries)
		}},
		{"milliseconds", http.Header{"Svix-Id": {"msg_4"}, "Svix-Timestamp": {strconv.FormatInt(now.UnixMilli(), 10)}, "Svix-Signature": {"v1,x"}}, tl.ErrTimestampTooNew, func(t *testing.T, dg tl.Diagnosis) {
			assert.Contains(t, strings.Join(dg.Hints, "\n"), "milliseconds")
		}},
		{"renamed header", http.Header{"X-Svix-Signature": {"v1,x"}, "Svix-Id": {"msg_5"}, "Svix-Timestamp": {ts}}, tl.ErrMissingHeaders, func(t *testing.T, dg tl.Diagnosis) {
			assert.Contains(t, strings.Join(dg.Hints, "\n"), "X-Svix-Signature is not a signature header name")
		}},
		{"malformed timestamp", http.Header{"Svix-Id": {"msg_6"}, "Svix-Timestamp": {"soon"}, "Svix-Signature": {"v1,x"}}, tl.ErrInvalidHeaders, func(t *testing.T, dg tl.Diagnosis) {
			assert.Zero(t, dg.Age)
			assert.True(t, dg.Delivery.Timestamp.IsZero())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dg := v.Diagnose(body, tt.header)
			require.ErrorIs(t, dg.Err, tt.wantErr)
			tt.check(t, dg)
		})
	}
}
