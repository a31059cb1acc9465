package tlwebhook_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
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
	"github.com/tlwebhook/tlwebhook/internal/everycallback"
	"github.com/tlwebhook/tlwebhook/internal/testutil"
)

// advSecret is the endpoint secret of the adversarial tests' handlers.
const advSecret = "whsec_q3bV2nDk0sVn8CNoT4mXwJ7UeQp1FhL6rYzA9gKc5Ws="

// advJob is a small, valid job.created payload.
const advJob = `{"job_id":"parse_adv","status":"pending","created_at":"2023-10-01T12:00:00Z"}`

// advWebhook returns svix's own implementation for secret: the oracle that
// signs requests and judges them.
func advWebhook(t testing.TB, secret string) *svix.Webhook {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	return wh
}

// advSign returns svix's signature header value for one delivery.
func advSign(t testing.TB, wh *svix.Webhook, id string, ts int64, body []byte) string {
	t.Helper()
	sig, err := wh.Sign(id, time.Unix(ts, 0), body)
	require.NoError(t, err)
	return sig
}

// advHeaders returns the svix-* headers of a delivery of body signed now
// by svix under wh.
func advHeaders(t testing.TB, wh *svix.Webhook, id string, body []byte) http.Header {
	t.Helper()
	ts := time.Now().Unix()
	h := http.Header{}
	h.Set(tl.HeaderSvixID, id)
	h.Set(tl.HeaderSvixTimestamp, strconv.FormatInt(ts, 10))
	h.Set(tl.HeaderSvixSignature, advSign(t, wh, id, ts, body))
	return h
}

// advRecorder records what callbacks receive.
type advRecorder struct {
	calls atomic.Int32
	mu    sync.Mutex
	last  any
}

func (r *advRecorder) record(ev any) error {
	r.calls.Add(1)
	r.mu.Lock()
	r.last = ev
	r.mu.Unlock()
	return nil
}

func (r *advRecorder) lastEvent() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// newAdvHandler returns a Handler for advSecret with a recording callback
// for every event type. Logs are discarded unless opts set a logger.
func newAdvHandler(t testing.TB, opts ...tl.HandlerOption) (*tl.Handler, *advRecorder) {
	t.Helper()
	opts = append([]tl.HandlerOption{tl.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	h, err := tl.NewHandler(advSecret, opts...)
	require.NoError(t, err)
	rec := &advRecorder{}
	everycallback.Register(h, func(_ context.Context, _ string, ev tl.Event) error { return rec.record(ev) })
	return h, rec
}

// headerCapture wraps a handler and keeps the headers of the last request
// as the handler saw them, after HTTP parsing.
type headerCapture struct {
	next http.Handler
	mu   sync.Mutex
	last http.Header
}

func (c *headerCapture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.last = r.Header.Clone()
	c.mu.Unlock()
	c.next.ServeHTTP(w, r)
}

func (c *headerCapture) header() http.Header {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// advPost sends body with the given headers to url and returns the status.
func advPost(t testing.TB, client *http.Client, url string, h http.Header, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, vs := range h {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	return resp.StatusCode
}

// TestAdversarialSignatureHeaderEntries sends signature headers with very
// many entries and very long entries. The verifier examines at most 64
// entries (maxSignatureEntries in verify.go), so the work per request is
// bounded: a valid signature placed after the 64th entry is not found,
// although svix, which tries every entry, accepts it. Long values cost no
// HMAC at all, since only 44-character v1 entries are candidates.
func TestAdversarialSignatureHeaderEntries(t *testing.T) {
	const entryCap = 64
	wh := advWebhook(t, advSecret)
	body := []byte(advJob)
	id := "msg_entries"
	ts := time.Now().Unix()
	valid := advSign(t, wh, id, ts, body)
	wrong := "v1," + strings.Repeat("A", 43) + "="
	long := "v1," + strings.Repeat("Q", 64<<10)

	// entries returns n entries, all wrong except valid at index at (-1: none).
	entries := func(n, at int, filler string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = filler
		}
		if at >= 0 {
			parts[at] = valid
		}
		return strings.Join(parts, " ")
	}

	cases := []struct {
		name      string
		sig       string
		want      int
		svixAgree bool // svix reaches the same verdict
	}{
		{"10000 wrong entries", entries(10000, -1, wrong), http.StatusUnauthorized, true},
		{"valid first of 10000", entries(10000, 0, wrong), http.StatusNoContent, true},
		{"valid last within the cap", entries(10000, entryCap-1, wrong), http.StatusNoContent, true},
		{"valid just beyond the cap", entries(10000, entryCap, wrong), http.StatusUnauthorized, false},
		{"valid at entry 10000", entries(10000, 9999, wrong), http.StatusUnauthorized, false},
		{"10000 unknown versions", entries(10000, -1, "v2,"+strings.Repeat("A", 43)+"="), http.StatusUnauthorized, true},
		{"10000 empty entries", strings.Repeat(" ", 9999), http.StatusUnauthorized, true},
		{"one 64 KiB entry", long, http.StatusUnauthorized, true},
		{"twelve 64 KiB entries", entries(12, -1, long), http.StatusUnauthorized, true},
		{"twelve 64 KiB entries then valid", entries(13, 12, long), http.StatusNoContent, true},
		{"64 KiB unknown version then valid", "v2," + strings.Repeat("Q", 64<<10) + " " + valid, http.StatusNoContent, true},
	}

	h, rec := newAdvHandler(t)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.MaxHeaderBytes = 2 << 20 // let 12 x 64 KiB reach the handler
	srv.Start()
	defer srv.Close()

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			hdr.Set(tl.HeaderSvixID, id)
			hdr.Set(tl.HeaderSvixTimestamp, strconv.FormatInt(ts, 10))
			hdr.Set(tl.HeaderSvixSignature, tc.sig)

			before := rec.calls.Load()
			start := time.Now()
			status := advPost(t, srv.Client(), srv.URL, hdr, string(body))
			elapsed := time.Since(start)
			assert.Equal(t, tc.want, status)
			if tc.want == http.StatusNoContent {
				assert.Equal(t, before+1, rec.calls.Load(), "callback runs once")
			} else {
				assert.Equal(t, before, rec.calls.Load(), "no callback")
			}
			// Generous: the point is that no request does quadratic or
			// per-entry HMAC work; each takes milliseconds.
			assert.Less(t, elapsed, 5*time.Second)

			svixOK := wh.Verify(body, hdr) == nil
			if tc.svixAgree {
				assert.Equal(t, status == http.StatusNoContent, svixOK, "svix disagrees")
			} else {
				assert.True(t, svixOK, "svix tries every entry and accepts")
			}
		})
	}
}

// lazyBody generates size bytes of JSON whitespace on demand, without
// holding them, and counts what has been read from it.
type lazyBody struct {
	size int64
	read atomic.Int64
}

func (b *lazyBody) Read(p []byte) (int, error) {
	left := b.size - b.read.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	for i := range p {
		p[i] = ' '
	}
	b.read.Add(int64(len(p)))
	return len(p), nil
}

// countingReadCloser counts the bytes a handler reads from a request body.
type countingReadCloser struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingReadCloser) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// smallBufferListener sets a small kernel receive buffer on accepted
// connections, so that what the client manages to send is bounded by what
// the server reads, not by loopback autotuning (tens of MiB on Linux).
type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(64 << 10)
	}
	return c, err
}

// heapPeak samples HeapInuse until stopped and returns the largest value.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var ms runtime.MemStats
		var peak uint64
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

func heapInuseAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestAdversarialStreamedBody streams a 1 GiB chunked body (no
// Content-Length) with valid-looking signature headers, so that the handler
// must read to find out. It answers 413 once the limit is passed; the
// handler reads at most limit+1 bytes, the client is able to send little more
// than that, and the heap stays small.
func TestAdversarialStreamedBody(t *testing.T) {
	const gib = 1 << 30
	limit := tl.DefaultMaxBodyBytes
	wh := advWebhook(t, advSecret)
	h, rec := newAdvHandler(t)

	var handlerRead atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = countingReadCloser{ReadCloser: r.Body, n: &handlerRead}
		h.ServeHTTP(w, r)
	}))
	srv.Listener = smallBufferListener{srv.Listener}
	srv.Start()
	defer srv.Close()

	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetWriteBuffer(64 << 10)
			}
			return c, err
		},
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	body := &lazyBody{size: gib}
	req, err := http.NewRequest(http.MethodPost, srv.URL, body)
	require.NoError(t, err)
	req.ContentLength = -1 // chunked
	// The signature is well formed (so the body must be read) but, as it
	// cannot cover a body that is never complete, it does not match.
	for k, v := range advHeaders(t, wh, "msg_stream", []byte("{}")) {
		req.Header[k] = v
	}

	base := heapInuseAfterGC()
	stop := make(chan struct{})
	peakCh := heapPeak(stop)
	start := time.Now()
	resp, err := client.Do(req)
	elapsed := time.Since(start)
	close(stop)
	peak := <-peakCh
	after := heapInuseAfterGC()

	// The server answers 413 while the client is still sending; the Go
	// client then either returns that answer or, if its write fails
	// first, the write error. Either way it stops sending.
	if err == nil {
		defer resp.Body.Close()
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		t.Logf("client got %d", resp.StatusCode)
	} else {
		t.Logf("client error after the server gave up: %v", err)
	}
	assert.Zero(t, rec.calls.Load())
	assert.LessOrEqual(t, handlerRead.Load(), limit+1, "handler read past the limit")
	// What the client gets out beyond what the handler read: net/http's
	// drain of up to 256 KiB after the handler returns, plus socket and
	// transport buffers (under 1 MiB with the small buffers set above).
	const slack = 256<<10 + 1<<20
	assert.Less(t, body.read.Load(), limit+slack, "client sent far more than the limit")
	growth := int64(peak) - int64(base)
	assert.Less(t, growth, int64(32<<20), "heap grew by %d bytes", growth)
	assert.Less(t, elapsed, 10*time.Second)
	t.Logf("1 GiB stream: handler read %d bytes, client sent %d bytes, heap peak +%.1f MiB (after GC %+.1f MiB), %v",
		handlerRead.Load(), body.read.Load(), float64(growth)/(1<<20), (float64(after)-float64(base))/(1<<20), elapsed.Round(time.Millisecond))
}

// TestAdversarialDeclaredLength checks that a declared Content-Length over
// the limit is refused before a byte of the body is read.
func TestAdversarialDeclaredLength(t *testing.T) {
	wh := advWebhook(t, advSecret)
	h, rec := newAdvHandler(t)
	var handlerRead atomic.Int64
	req := httptest.NewRequest(http.MethodPost, "/hook", &lazyBody{size: 1 << 30})
	req.ContentLength = 1 << 30
	for k, v := range advHeaders(t, wh, "msg_declared", []byte("{}")) {
		req.Header[k] = v
	}
	req.Body = countingReadCloser{ReadCloser: req.Body, n: &handlerRead}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	assert.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
	assert.Zero(t, handlerRead.Load())
	assert.Zero(t, rec.calls.Load())
}

// rawConn opens a TCP connection to srv for hand-written requests.
func rawConn(t *testing.T, srv *httptest.Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// rawHead returns the request line and headers of a POST with the given
// signature headers and declared length.
func rawHead(h http.Header, length int) string {
	var b strings.Builder
	b.WriteString("POST /hook HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\n", length)
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// doneSignal wraps a handler and reports when each call returns.
type doneSignal struct {
	next http.Handler
	done chan time.Time
}

func (d doneSignal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() { d.done <- time.Now() }()
	d.next.ServeHTTP(w, r)
}

// TestAdversarialSlowBody sends a body a byte at a time, slower than the
// server's ReadTimeout allows. The body read fails at the deadline, the
// handler answers 400 without verifying or calling back, and returns.
func TestAdversarialSlowBody(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	wh := advWebhook(t, advSecret)
	body := []byte(advJob)
	h, rec := newAdvHandler(t)
	done := doneSignal{next: h, done: make(chan time.Time, 1)}
	srv := httptest.NewUnstartedServer(done)
	srv.Config.ReadTimeout = readTimeout
	srv.Start()
	defer srv.Close()

	c := rawConn(t, srv)
	start := time.Now()
	_, err := io.WriteString(c, rawHead(advHeaders(t, wh, "msg_slow", body), len(body)))
	require.NoError(t, err)
	stopDrip := make(chan struct{})
	dripDone := make(chan struct{})
	go func() { // one byte every 50 ms: the whole body would take seconds
		defer close(dripDone)
		for _, b := range body {
			select {
			case <-stopDrip:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	defer func() { close(stopDrip); <-dripDone }()

	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Minute)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "a body that does not arrive in time is not a payload")
	select {
	case end := <-done.done:
		took := end.Sub(start)
		assert.GreaterOrEqual(t, took, readTimeout-50*time.Millisecond)
		// The whole body takes 50ms a byte, over 4s.
		assert.Less(t, took, time.Duration(len(body))*50*time.Millisecond, "handler outlived the read timeout")
	case <-time.After(time.Minute):
		t.Fatal("handler did not return")
	}
	assert.Zero(t, rec.calls.Load())
}

// TestAdversarialClientGone checks that the handler returns when the client
// disconnects in the middle of the body, and that a callback sees its
// context cancelled when the client disconnects while it runs.
func TestAdversarialClientGone(t *testing.T) {
	wh := advWebhook(t, advSecret)
	body := []byte(advJob)

	t.Run("during the body", func(t *testing.T) {
		h, rec := newAdvHandler(t)
		done := doneSignal{next: h, done: make(chan time.Time, 1)}
		srv := httptest.NewServer(done)
		defer srv.Close()
		c := rawConn(t, srv)
		_, err := io.WriteString(c, rawHead(advHeaders(t, wh, "msg_gone", body), len(body))+string(body[:10]))
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond)
		closed := time.Now()
		require.NoError(t, c.Close())
		select {
		case end := <-done.done:
			assert.Less(t, end.Sub(closed), 30*time.Second)
		case <-time.After(time.Minute):
			t.Fatal("handler did not return after the client left")
		}
		assert.Zero(t, rec.calls.Load())
	})

	t.Run("during the callback", func(t *testing.T) {
		h, err := tl.NewHandler(advSecret, tl.WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(t, err)
		started := make(chan struct{})
		cancelled := make(chan error, 1)
		h.OnJobCreated(func(ctx context.Context, _ *tl.JobCreated) error {
			close(started)
			select {
			case <-ctx.Done():
				cancelled <- ctx.Err()
			case <-time.After(time.Minute):
				cancelled <- nil
			}
			return nil
		})
		srv := httptest.NewServer(h)
		defer srv.Close()
		c := rawConn(t, srv)
		_, err = io.WriteString(c, rawHead(advHeaders(t, wh, "msg_gone_cb", body), len(body))+string(body))
		require.NoError(t, err)
		select {
		case <-started:
		case <-time.After(time.Minute):
			t.Fatal("callback did not start")
		}
		require.NoError(t, c.Close())
		select {
		case err := <-cancelled:
			assert.ErrorIs(t, err, context.Canceled, "the callback's context must end with the request")
		case <-time.After(2 * time.Minute):
			t.Fatal("callback did not finish")
		}
	})
}

// TestAdversarialRepeatedHeaders sends signature headers more than once.
// Like svix (http.Header.Get), the verifier uses the first value of each;
// every verdict is compared with svix's on the headers the handler saw.
func TestAdversarialRepeatedHeaders(t *testing.T) {
	wh := advWebhook(t, advSecret)
	other := advWebhook(t, "whsec_"+strings.Repeat("QUJD", 8))
	body := []byte(advJob)
	now := time.Now().Unix()
	id := "msg_repeat"
	good := advSign(t, wh, id, now, body)
	bad := advSign(t, other, id, now, body)
	nowS := strconv.FormatInt(now, 10)
	stale := strconv.FormatInt(now-3600, 10)
	staleSig := advSign(t, wh, id, now-3600, body)

	cases := []struct {
		name string
		h    http.Header
		want int
	}{
		{"signature: bad then good", http.Header{"Svix-Id": {id}, "Svix-Timestamp": {nowS}, "Svix-Signature": {bad, good}}, http.StatusUnauthorized},
		{"signature: good then bad", http.Header{"Svix-Id": {id}, "Svix-Timestamp": {nowS}, "Svix-Signature": {good, bad}}, http.StatusNoContent},
		{"signature: empty then good", http.Header{"Svix-Id": {id}, "Svix-Timestamp": {nowS}, "Svix-Signature": {"", good}}, http.StatusUnauthorized},
		{"id: signed one first", http.Header{"Svix-Id": {id, "msg_other"}, "Svix-Timestamp": {nowS}, "Svix-Signature": {good}}, http.StatusNoContent},
		{"id: other one first", http.Header{"Svix-Id": {"msg_other", id}, "Svix-Timestamp": {nowS}, "Svix-Signature": {good}}, http.StatusUnauthorized},
		{"timestamp: fresh first", http.Header{"Svix-Id": {id}, "Svix-Timestamp": {nowS, stale}, "Svix-Signature": {good}}, http.StatusNoContent},
		{"timestamp: stale first", http.Header{"Svix-Id": {id}, "Svix-Timestamp": {stale, nowS}, "Svix-Signature": {staleSig, good}}, http.StatusUnauthorized},
		{"both sets: svix wins", http.Header{"Svix-Id": {id}, "Svix-Timestamp": {nowS}, "Svix-Signature": {bad}, "Webhook-Id": {id}, "Webhook-Timestamp": {nowS}, "Webhook-Signature": {good}}, http.StatusUnauthorized},
		{"incomplete svix set: webhook used", http.Header{"Svix-Id": {id}, "Svix-Signature": {bad}, "Webhook-Id": {id}, "Webhook-Timestamp": {nowS}, "Webhook-Signature": {good}}, http.StatusNoContent},
		{"two webhook signatures: good first", http.Header{"Webhook-Id": {id}, "Webhook-Timestamp": {nowS}, "Webhook-Signature": {good, bad}}, http.StatusNoContent},
	}

	h, rec := newAdvHandler(t)
	capture := &headerCapture{next: h}
	srv := httptest.NewServer(capture)
	defer srv.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.calls.Load()
			status := advPost(t, srv.Client(), srv.URL, tc.h, string(body))
			assert.Equal(t, tc.want, status)
			seen := capture.header()
			require.NotNil(t, seen)
			for name, vs := range tc.h {
				assert.Equal(t, vs, seen.Values(name), "the server keeps every %s value in order", name)
			}
			svixOK := wh.Verify(body, seen) == nil
			assert.Equal(t, svixOK, status == http.StatusNoContent, "svix disagrees")
			assert.Equal(t, status == http.StatusNoContent, rec.calls.Load() == before+1)
		})
	}
}

// advServe sends a verified delivery of body to a fresh handler over a real
// server and returns the status and what the callback received.
func advServe(t *testing.T, body []byte) (int, any) {
	t.Helper()
	wh := advWebhook(t, advSecret)
	h, rec := newAdvHandler(t)
	srv := httptest.NewServer(h)
	defer srv.Close()
	status := advPost(t, srv.Client(), srv.URL, advHeaders(t, wh, "msg_body", body), string(body))
	switch status {
	case http.StatusNoContent:
		assert.Equal(t, int32(1), rec.calls.Load())
	default:
		assert.Zero(t, rec.calls.Load())
	}
	return status, rec.lastEvent()
}

// TestAdversarialNonUTF8Bodies sends verified bodies that are not valid
// UTF-8. Decoding is strict (encoding/json/v2): invalid UTF-8 anywhere, raw
// or as an escaped lone surrogate, is 400 and runs no callback, so that no
// reader of the payload can turn the bad bytes into a different string than
// the callback saw (encoding/json v1 would decode each as U+FFFD). Bytes
// outside strings, other encodings and a byte order mark are not JSON and
// get 400 too.
func TestAdversarialNonUTF8Bodies(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		want  int
		check func(t *testing.T, body string, ev any)
	}{
		{name: "invalid UTF-8 in a job id", body: "{\"job_id\":\"parse_\xff\xfe\",\"status\":\"pending\",\"created_at\":\"2023-10-01T12:00:00Z\"}", want: http.StatusBadRequest},
		{name: "Latin-1 in an unknown payload", body: "{\"caf\xe9\":\"na\xefve\"}", want: http.StatusBadRequest},
		{name: "encoded surrogate in an event type", body: "{\"event_type\":\"tensorlake.sandbox.\xed\xa0\x80\",\"event_version\":1}", want: http.StatusBadRequest},
		{name: "escaped lone surrogate", body: `{"event_id":"evt_\ud800","event_type":"x"}`, want: http.StatusBadRequest},
		{
			name: "valid UTF-8 and escaped surrogate pairs are accepted",
			body: `{"job_id":"parse_\u00e9\ud83d\ude00été","status":"pending","created_at":"2023-10-01T12:00:00Z"}`,
			want: http.StatusNoContent,
			check: func(t *testing.T, _ string, ev any) {
				jc, ok := ev.(*tl.JobCreated)
				require.True(t, ok, "got %T", ev)
				assert.Equal(t, "parse_é😀été", jc.JobID)
			},
		},
		{name: "invalid byte after the object", body: "{\"a\":1}\xff", want: http.StatusBadRequest},
		{name: "invalid byte as a value", body: "{\"a\":\xff}", want: http.StatusBadRequest},
		{name: "UTF-8 byte order mark", body: "\xef\xbb\xbf{}", want: http.StatusBadRequest},
		{name: "UTF-16LE with byte order mark", body: "\xff\xfe{\x00}\x00", want: http.StatusBadRequest},
		{name: "NUL inside a string", body: "{\"a\":\"\x00\"}", want: http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, ev := advServe(t, []byte(tc.body))
			assert.Equal(t, tc.want, status)
			if tc.check != nil && status == http.StatusNoContent {
				tc.check(t, tc.body, ev)
			}
		})
	}
}

// TestAdversarialDeepNesting sends verified bodies nested 100,000 levels
// deep. encoding/json refuses nesting beyond 10,000 levels, so they are
// 400, without a crash; moderate nesting in a field no type models is fine.
func TestAdversarialDeepNesting(t *testing.T) {
	const deep = 100_000
	cases := []struct {
		name string
		body string
		want int
	}{
		{"objects", strings.Repeat(`{"a":`, deep) + "1" + strings.Repeat("}", deep), http.StatusBadRequest},
		{"arrays in a field", `{"x":` + strings.Repeat("[", deep) + strings.Repeat("]", deep) + `}`, http.StatusBadRequest},
		{"arrays in a sandbox event's data", `{"event_type":"tensorlake.sandbox.failed","event_version":1,"data":` + strings.Repeat("[", deep) + strings.Repeat("]", deep) + `}`, http.StatusBadRequest},
		{"unclosed", strings.Repeat(`{"a":`, deep), http.StatusBadRequest},
		{"1000 levels in an unknown field", `{"status":"pending","job_id":"j","created_at":"2023-10-01T12:00:00Z","x":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `}`, http.StatusNoContent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			status, _ := advServe(t, []byte(tc.body))
			assert.Equal(t, tc.want, status)
			assert.Less(t, time.Since(start), 10*time.Second)
		})
	}
}

// TestAdversarialHugeNumbers sends verified bodies with numbers that do not
// fit Go's types. Numbers in fields a type models must fit, else the event
// is breaking drift and reaches OnUnknown as an UnknownEvent naming the
// member; numbers elsewhere are only checked for JSON syntax (else 400).
func TestAdversarialHugeNumbers(t *testing.T) {
	job := func(pages string) string {
		return `{"job_id":"j","status":"successful","created_at":"2023-10-01T12:00:00Z","finished_at":"2023-10-01T12:00:00Z","usage":{"pages_parsed":` + pages + `}}`
	}
	sandbox := func(field, value string) string {
		return `{"event_id":"evt_1","event_type":"tensorlake.sandbox.running","event_version":1,"occurred_at":"2026-07-24T21:15:15.123Z","source_revision":"1","source_ordinal":0,` +
			`"data":{"previous_status":null,"sandbox":{"id":"s","type":"named","generation_id":1,"status":"running","created_at":"2026-07-24T20:10:00Z","resources":{"` + field + `":` + value + `}}}}`
	}
	hundredK := "1" + strings.Repeat("0", 100_000)
	badNumberAt := func(pointer string) func(t *testing.T, ev any) {
		return func(t *testing.T, ev any) {
			u, ok := ev.(*tl.UnknownEvent)
			require.True(t, ok, "got %T", ev)
			assert.Contains(t, u.Drift, tl.Drift{EventType: u.Type(), Pointer: pointer, Kind: tl.DriftBadNumber})
		}
	}
	cases := []struct {
		name  string
		body  string
		want  int
		check func(t *testing.T, ev any)
	}{
		{"int64 max", job("9223372036854775807"), http.StatusNoContent, func(t *testing.T, ev any) {
			jc, ok := ev.(*tl.JobCompleted)
			require.True(t, ok, "got %T", ev)
			assert.Equal(t, int64(9223372036854775807), jc.Usage.PagesParsed)
		}},
		{"int64 max + 1", job("9223372036854775808"), http.StatusNoContent, badNumberAt("/usage/pages_parsed")},
		{"1e400 in a modelled int", job("1e400"), http.StatusNoContent, badNumberAt("/usage/pages_parsed")},
		{"100,000 digits in a modelled int", job(hundredK), http.StatusNoContent, badNumberAt("/usage/pages_parsed")},
		{"fraction in a modelled int", job("1.5"), http.StatusNoContent, badNumberAt("/usage/pages_parsed")},
		{"1e400 in a modelled float", sandbox("cpus", "1e400"), http.StatusNoContent, badNumberAt("/data/sandbox/resources/cpus")},
		{"1e308 in a modelled float", sandbox("cpus", "1e308"), http.StatusNoContent, func(t *testing.T, ev any) {
			se, ok := ev.(*tl.SandboxEvent)
			require.True(t, ok, "got %T", ev)
			assert.Equal(t, 1e308, se.Data.Sandbox.Resources.CPUs)
		}},
		{"1e400 in an unmodelled field", `{"n":1e400}`, http.StatusNoContent, nil},
		{"100,000 digits in an unmodelled field", `{"n":` + hundredK + `}`, http.StatusNoContent, func(t *testing.T, ev any) {
			u, ok := ev.(*tl.UnknownEvent)
			require.True(t, ok, "got %T", ev)
			assert.Len(t, u.Raw, len(hundredK)+6)
		}},
		{"numeric source_revision beyond 64 bits", `{"event_type":"tensorlake.sandbox.running","event_version":1,"source_revision":` + hundredK + `,"data":{}}`, http.StatusNoContent, func(t *testing.T, ev any) {
			se, ok := ev.(*tl.SandboxEvent)
			require.True(t, ok, "got %T", ev)
			assert.Equal(t, tl.Revision(hundredK), se.SourceRevision, "kept exactly")
		}},
		{"source_revision 1e400", `{"event_type":"tensorlake.sandbox.running","event_version":1,"source_revision":1e400,"data":{}}`, http.StatusNoContent, badNumberAt("/source_revision")},
		{"invalid number syntax", `{"n":01}`, http.StatusBadRequest, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, ev := advServe(t, []byte(tc.body))
			assert.Equal(t, tc.want, status)
			if tc.check != nil && status == http.StatusNoContent {
				tc.check(t, ev)
			}
		})
	}
}

// TestAdversarialTimestamps sends timestamps that are out of range, not
// decimal integers, or padded, both straight to ServeHTTP (headers exactly
// as given) and over a real connection (where HTTP parsing trims
// surrounding whitespace from header values). Every verdict agrees with
// svix's on the headers the handler saw.
func TestAdversarialTimestamps(t *testing.T) {
	wh := advWebhook(t, advSecret)
	body := []byte(advJob)
	id := "msg_ts"
	now := strconv.FormatInt(time.Now().Unix(), 10)
	cases := []struct {
		name       string
		ts         string
		wantDirect int
		wantWire   int
	}{
		{"19 nines (overflows int64)", "9999999999999999999", http.StatusUnauthorized, http.StatusUnauthorized},
		{"minus one", "-1", http.StatusUnauthorized, http.StatusUnauthorized},
		{"zero", "0", http.StatusUnauthorized, http.StatusUnauthorized},
		{"exponent", "1e9", http.StatusUnauthorized, http.StatusUnauthorized},
		{"padded old", " 1614265330", http.StatusUnauthorized, http.StatusUnauthorized},
		{"int64 max", "9223372036854775807", http.StatusUnauthorized, http.StatusUnauthorized},
		{"int64 min", "-9223372036854775808", http.StatusUnauthorized, http.StatusUnauthorized},
		{"fraction", now + ".0", http.StatusUnauthorized, http.StatusUnauthorized},
		{"milliseconds", now + "000", http.StatusUnauthorized, http.StatusUnauthorized},
		{"hexadecimal", "0x" + strconv.FormatInt(time.Now().Unix(), 16), http.StatusUnauthorized, http.StatusUnauthorized},
		{"non-ASCII digits", "١٦١٤٢٦٥٣٣٠", http.StatusUnauthorized, http.StatusUnauthorized},
		{"leading space", " " + now, http.StatusUnauthorized, http.StatusNoContent},
		{"trailing space", now + " ", http.StatusUnauthorized, http.StatusNoContent},
		{"leading tab", "\t" + now, http.StatusUnauthorized, http.StatusNoContent},
		{"plus sign", "+" + now, http.StatusNoContent, http.StatusNoContent},
		{"leading zero", "0" + now, http.StatusNoContent, http.StatusNoContent},
		{"now", now, http.StatusNoContent, http.StatusNoContent},
	}

	h, rec := newAdvHandler(t)
	capture := &headerCapture{next: h}
	srv := httptest.NewServer(capture)
	defer srv.Close()

	for _, tc := range cases {
		// Sign what an honest signer would for this value: the integer
		// when there is one, so that only the timestamp is at fault.
		n, err := strconv.ParseInt(strings.TrimSpace(tc.ts), 10, 64)
		if err != nil {
			n = time.Now().Unix()
		}
		hdr := http.Header{}
		hdr[http.CanonicalHeaderKey(tl.HeaderSvixID)] = []string{id}
		hdr[http.CanonicalHeaderKey(tl.HeaderSvixTimestamp)] = []string{tc.ts}
		hdr[http.CanonicalHeaderKey(tl.HeaderSvixSignature)] = []string{advSign(t, wh, id, n, body)}

		t.Run(tc.name+"/direct", func(t *testing.T) {
			before := rec.calls.Load()
			req := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(string(body)))
			req.Header = hdr.Clone()
			w := httptest.NewRecorder()
			capture.ServeHTTP(w, req)
			assert.Equal(t, tc.wantDirect, w.Code)
			svixOK := wh.Verify(body, capture.header()) == nil
			assert.Equal(t, svixOK, w.Code == http.StatusNoContent, "svix disagrees")
			assert.Equal(t, w.Code == http.StatusNoContent, rec.calls.Load() == before+1)
		})
		t.Run(tc.name+"/wire", func(t *testing.T) {
			before := rec.calls.Load()
			c := rawConn(t, srv)
			_, err := io.WriteString(c, rawHead(hdr, len(body))+string(body))
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tc.wantWire, resp.StatusCode)
			seen := capture.header()
			assert.Equal(t, strings.TrimSpace(tc.ts), seen.Get(tl.HeaderSvixTimestamp), "server trims header values")
			svixOK := wh.Verify(body, seen) == nil
			assert.Equal(t, svixOK, resp.StatusCode == http.StatusNoContent, "svix disagrees")
			assert.Equal(t, resp.StatusCode == http.StatusNoContent, rec.calls.Load() == before+1)
		})
	}
}

// TestAdversarialErrorsCarryNoInput checks that a rejected delivery's
// response is one of the fixed short texts, whatever the input.
func TestAdversarialErrorsCarryNoInput(t *testing.T) {
	h, _ := newAdvHandler(t)
	marker := "ATTACKER-CONTROLLED-" + strings.Repeat("x", 32)
	reqs := map[string]*http.Request{}
	r := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(marker))
	r.Header.Set(tl.HeaderSvixID, marker)
	r.Header.Set(tl.HeaderSvixTimestamp, marker)
	r.Header.Set(tl.HeaderSvixSignature, "v1,"+marker)
	reqs["bad timestamp"] = r
	r = httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(marker))
	r.Header.Set(tl.HeaderSvixID, marker)
	r.Header.Set(tl.HeaderSvixTimestamp, strconv.FormatInt(time.Now().Unix(), 10))
	r.Header.Set(tl.HeaderSvixSignature, "v1,"+marker)
	reqs["bad signature"] = r
	r = httptest.NewRequest(marker[:8], "/hook", strings.NewReader(marker))
	reqs["bad method"] = r
	for name, req := range reqs {
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			assert.GreaterOrEqual(t, w.Code, 400)
			assert.NotContains(t, w.Body.String(), "ATTACKER")
			assert.Less(t, w.Body.Len(), 64)
		})
	}
}

// TestAdversarialLogLinesBounded sends attacker-controlled fields of
// hundreds of kilobytes over a real server (the request line and headers
// may be up to http.DefaultMaxHeaderBytes) and checks that every log record
// stays short: a forged request must not turn into a large log write.
func TestAdversarialLogLinesBounded(t *testing.T) {
	const maxRecord = 2 << 10
	long := strings.Repeat("A", 256<<10)
	now := strconv.FormatInt(time.Now().Unix(), 10)
	cases := []struct {
		name   string
		method string
		h      http.Header
	}{
		{"long method", "X" + long, nil},
		{"long id", http.MethodPost, http.Header{"Svix-Id": {long}, "Svix-Timestamp": {now}, "Svix-Signature": {"v1," + strings.Repeat("A", 43) + "="}}},
		{"long timestamp", http.MethodPost, http.Header{"Svix-Id": {"msg_1"}, "Svix-Timestamp": {"1" + long}, "Svix-Signature": {"v1,x"}}},
		{"long signature", http.MethodPost, http.Header{"Svix-Id": {"msg_1"}, "Svix-Timestamp": {now}, "Svix-Signature": {"v1," + long}}},
		{"long forwarded-for", http.MethodPost, http.Header{"X-Forwarded-For": {long}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testutil.SyncBuffer{}
			h, _ := newAdvHandler(t,
				tl.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))),
				tl.WithAllowedSources(netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")),
				tl.WithTrustedProxies(netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")))
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, err := http.NewRequest(tc.method, srv.URL, strings.NewReader(advJob))
			require.NoError(t, err)
			for k, v := range tc.h {
				req.Header[k] = v
			}
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.GreaterOrEqual(t, resp.StatusCode, 400)
			out := strings.TrimSpace(logs.String())
			require.NotEmpty(t, out, "the rejection was not logged")
			for _, line := range strings.Split(out, "\n") {
				assert.LessOrEqualf(t, len(line), maxRecord, "log record of %d bytes: %.200s...", len(line), line)
			}
		})
	}
}
