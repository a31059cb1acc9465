package tlwebhook_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
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

// htCallbacks are the names of the Handler's callback registrations.
var htCallbacks = []string{
	"OnJobCreated", "OnJobFailed", "OnJobCompleted", "OnWorkflowCompleted",
	"OnSandboxEvent", "OnApplicationEvent", "OnRequestEvent", "OnUnknown",
}

// htCall is one callback invocation.
type htCall struct {
	name     string
	ev       tl.Event
	delivery tl.Delivery
	hasDeliv bool
}

// htRecorder counts callback invocations and keeps what each one saw.
type htRecorder struct {
	mu     sync.Mutex
	calls  []htCall
	behave func(name string) error // what every callback does after recording
}

func (r *htRecorder) record(ctx context.Context, name string, ev tl.Event) error {
	d, ok := tl.DeliveryFromContext(ctx)
	r.mu.Lock()
	r.calls = append(r.calls, htCall{name: name, ev: ev, delivery: d, hasDeliv: ok})
	behave := r.behave
	r.mu.Unlock()
	if behave != nil {
		return behave(name)
	}
	return nil
}

// counts returns how often each callback ran.
func (r *htRecorder) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for _, c := range r.calls {
		m[c.name]++
	}
	return m
}

func (r *htRecorder) last(t *testing.T) htCall {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotEmpty(t, r.calls, "no callback ran")
	return r.calls[len(r.calls)-1]
}

// registerAll registers every callback of h to record into r.
func (r *htRecorder) registerAll(h *tl.Handler) {
	everycallback.Register(h, r.record)
}

// htLockedBuffer captures JSON log lines written concurrently.
type htLockedBuffer struct{ testutil.SyncBuffer }

// records parses the JSON log lines.
func (b *htLockedBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "log line %q", sc.Text())
		out = append(out, m)
	}
	require.NoError(t, sc.Err())
	return out
}

// htEnv is a Handler behind a real httptest.Server, with a fixed clock, a
// JSON logger on a buffer, every callback recorded, and svix's own library
// to sign deliveries.
type htEnv struct {
	secret string // whsec_...
	key    string // the base64 part of secret
	wh     *svix.Webhook
	now    time.Time
	h      *tl.Handler
	srv    *httptest.Server
	logs   *htLockedBuffer
	rec    *htRecorder
}

func htNewSecret(t *testing.T) (secret, key string) {
	t.Helper()
	raw := make([]byte, 24)
	_, err := rand.Read(raw)
	require.NoError(t, err)
	key = base64.StdEncoding.EncodeToString(raw)
	return "whsec_" + key, key
}

func newHTEnv(t *testing.T, opts ...tl.HandlerOption) *htEnv {
	t.Helper()
	secret, key := htNewSecret(t)
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	env := &htEnv{
		secret: secret, key: key, wh: wh,
		now:  time.Unix(1785000000, 0),
		logs: &htLockedBuffer{},
		rec:  &htRecorder{},
	}
	logger := slog.New(slog.NewJSONHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	all := append([]tl.HandlerOption{tl.WithClock(func() time.Time { return env.now }), tl.WithLogger(logger)}, opts...)
	env.h, err = tl.NewHandler(secret, all...)
	require.NoError(t, err)
	env.rec.registerAll(env.h)
	env.srv = httptest.NewServer(env.h)
	t.Cleanup(env.srv.Close)
	return env
}

// sign returns svix's signature header value for the delivery.
func (e *htEnv) sign(t *testing.T, id string, ts time.Time, body []byte) string {
	t.Helper()
	sig, err := e.wh.Sign(id, ts, body)
	require.NoError(t, err)
	return sig
}

// headers returns the svix-* headers of a delivery signed now.
func (e *htEnv) headers(t *testing.T, id string, body []byte) http.Header {
	t.Helper()
	h, err := e.tryHeaders(id, body)
	require.NoError(t, err)
	return h
}

// tryHeaders is headers for goroutines other than the test's.
func (e *htEnv) tryHeaders(id string, body []byte) (http.Header, error) {
	sig, err := e.wh.Sign(id, e.now, body)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("svix-id", id)
	h.Set("svix-timestamp", fmt.Sprint(e.now.Unix()))
	h.Set("svix-signature", sig)
	return h, nil
}

// htResponse is what the client saw.
type htResponse struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request to the server. A nil length hides the body's length
// so that the client sends it chunked.
func (e *htEnv) do(t *testing.T, method string, body []byte, h http.Header, chunked bool) htResponse {
	t.Helper()
	resp, err := e.try(method, body, h, chunked)
	require.NoError(t, err)
	return resp
}

// try is do for goroutines other than the test's.
func (e *htEnv) try(method string, body []byte, h http.Header, chunked bool) (htResponse, error) {
	var r io.Reader = bytes.NewReader(body)
	if chunked {
		r = io.MultiReader(r) // unknown length: Transfer-Encoding: chunked
	}
	req, err := http.NewRequest(method, e.srv.URL+"/webhooks/tensorlake", r)
	if err != nil {
		return htResponse{}, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		return htResponse{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return htResponse{}, err
	}
	return htResponse{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// post sends a delivery signed now with svix-* headers.
func (e *htEnv) post(t *testing.T, id string, body []byte) htResponse {
	t.Helper()
	return e.do(t, http.MethodPost, body, e.headers(t, id, body), false)
}

// tryPost is post for goroutines other than the test's. It returns the
// status, or an error.
func (e *htEnv) tryPost(id string, body []byte) (int, error) {
	h, err := e.tryHeaders(id, body)
	if err != nil {
		return 0, err
	}
	resp, err := e.try(http.MethodPost, body, h, false)
	return resp.status, err
}

func is2xx(status int) bool { return status >= 200 && status <= 299 }

// htCanary marks payload content that must never show in responses or logs.
const htCanary = "zq-canary-payload-7731"

var htJobCreated = []byte(`{"job_id":"parse_` + htCanary + `","status":"pending","created_at":"2023-10-01T12:00:00Z"}`)

// htOversize is a verified-looking JSON object of n bytes.
func htOversize(n int) []byte {
	prefix := `{"job_id":"parse_big","status":"pending","pad":"` + htCanary
	return []byte(prefix + strings.Repeat("x", n-len(prefix)-2) + `"}`)
}

// htRow is one row of the status table of DESIGN.md.
type htRow struct {
	name string
	// setup adjusts the handler, e.g. to unregister a callback or make the
	// callbacks fail.
	setup func(e *htEnv)
	// request returns the method, body, headers and chunking of the delivery.
	request func(t *testing.T, e *htEnv) (method string, body []byte, h http.Header, chunked bool)
	status  int            // exact status, or 0 for any 2xx
	calls   map[string]int // callbacks that must have run, and how often
	// canary is payload content that must not appear in responses or logs
	// (besides htCanary).
	canary string
	// loggedID is the delivery id the logs must carry, if any.
	loggedID string
}

const htLimit = 1024

func htSigned(body []byte) func(t *testing.T, e *htEnv) (string, []byte, http.Header, bool) {
	return func(t *testing.T, e *htEnv) (string, []byte, http.Header, bool) {
		return http.MethodPost, body, e.headers(t, "msg_row", body), false
	}
}

// htTampered returns a request whose headers are signed for body, changed
// by edit.
func htTampered(edit func(t *testing.T, e *htEnv, h http.Header) []byte) func(t *testing.T, e *htEnv) (string, []byte, http.Header, bool) {
	return func(t *testing.T, e *htEnv) (string, []byte, http.Header, bool) {
		h := e.headers(t, "msg_row", htJobCreated)
		body := edit(t, e, h)
		if body == nil {
			body = htJobCreated
		}
		return http.MethodPost, body, h, false
	}
}

func htStatusRows() []htRow {
	once := map[string]int{"OnJobCreated": 1}
	none := map[string]int{}
	rows := []htRow{
		{name: "verified, callback returns nil", request: htSigned(htJobCreated), calls: once, loggedID: "msg_row"},
		{name: "verified with webhook-* headers", request: func(t *testing.T, e *htEnv) (string, []byte, http.Header, bool) {
			h := http.Header{}
			h.Set("webhook-id", "msg_row")
			h.Set("webhook-timestamp", fmt.Sprint(e.now.Unix()))
			h.Set("webhook-signature", e.sign(t, "msg_row", e.now, htJobCreated))
			return http.MethodPost, htJobCreated, h, false
		}, calls: once, loggedID: "msg_row"},
		{name: "verified, no callback for the event", setup: func(e *htEnv) { e.h.OnJobCreated(nil) },
			request: htSigned(htJobCreated), calls: none, loggedID: "msg_row"},
		{name: "verified, callback returns an error", setup: func(e *htEnv) {
			e.rec.behave = func(string) error { return errors.New("callback failed on purpose") }
		}, request: htSigned(htJobCreated), status: http.StatusInternalServerError, calls: once, loggedID: "msg_row"},
		{name: "verified, callback panics", setup: func(e *htEnv) {
			e.rec.behave = func(string) error { panic("deliberate panic in callback") }
		}, request: htSigned(htJobCreated), status: http.StatusInternalServerError, calls: once, loggedID: "msg_row"},
		{name: "GET", request: func(t *testing.T, e *htEnv) (string, []byte, http.Header, bool) {
			_, b, h, _ := htSigned(htJobCreated)(t, e)
			return http.MethodGet, b, h, false
		}, status: http.StatusMethodNotAllowed, calls: none},
		{name: "PUT", request: func(t *testing.T, e *htEnv) (string, []byte, http.Header, bool) {
			_, b, h, _ := htSigned(htJobCreated)(t, e)
			return http.MethodPut, b, h, false
		}, status: http.StatusMethodNotAllowed, calls: none},
		{name: "body over the limit, declared length", request: htSigned(htOversize(htLimit + 1)),
			status: http.StatusRequestEntityTooLarge, calls: none},
		{name: "body over the limit, chunked", request: func(t *testing.T, e *htEnv) (string, []byte, http.Header, bool) {
			m, b, h, _ := htSigned(htOversize(4*htLimit))(t, e)
			return m, b, h, true
		}, status: http.StatusRequestEntityTooLarge, calls: none, loggedID: "msg_row"},
		{name: "body at the limit, chunked", request: func(t *testing.T, e *htEnv) (string, []byte, http.Header, bool) {
			m, b, h, _ := htSigned(htOversize(htLimit))(t, e)
			return m, b, h, true
		}, calls: once, loggedID: "msg_row"},
		{name: "no headers", request: func(t *testing.T, e *htEnv) (string, []byte, http.Header, bool) {
			return http.MethodPost, htJobCreated, http.Header{}, false
		}, status: http.StatusUnauthorized, calls: none},
	}
	for _, missing := range []string{"svix-id", "svix-timestamp", "svix-signature"} {
		rows = append(rows, htRow{name: "missing " + missing, request: htTampered(func(t *testing.T, e *htEnv, h http.Header) []byte {
			h.Del(missing)
			return nil
		}), status: http.StatusUnauthorized, calls: none})
	}
	for _, ts := range []string{"abc", "1.785e9", "1785000000.0", "0x6a65f680", "17850000000000000000000"} {
		rows = append(rows, htRow{name: "malformed timestamp " + ts, request: htTampered(func(t *testing.T, e *htEnv, h http.Header) []byte {
			h.Set("svix-timestamp", ts)
			return nil
		}), status: http.StatusUnauthorized, calls: none, loggedID: "msg_row"})
	}
	rows = append(rows,
		htRow{name: "signed with another secret", request: htTampered(func(t *testing.T, e *htEnv, h http.Header) []byte {
			other, _ := htNewSecret(t)
			wh, err := svix.NewWebhook(other)
			require.NoError(t, err)
			sig, err := wh.Sign("msg_row", e.now, htJobCreated)
			require.NoError(t, err)
			h.Set("svix-signature", sig)
			return nil
		}), status: http.StatusUnauthorized, calls: none, loggedID: "msg_row"},
		htRow{name: "body changed after signing", request: htTampered(func(t *testing.T, e *htEnv, h http.Header) []byte {
			return bytes.Replace(htJobCreated, []byte("pending"), []byte("failure"), 1)
		}), status: http.StatusUnauthorized, calls: none, loggedID: "msg_row"},
		htRow{name: "signature of another id", request: htTampered(func(t *testing.T, e *htEnv, h http.Header) []byte {
			h.Set("svix-signature", e.sign(t, "msg_other", e.now, htJobCreated))
			return nil
		}), status: http.StatusUnauthorized, calls: none, loggedID: "msg_row"},
		htRow{name: "stale", request: htTampered(func(t *testing.T, e *htEnv, h http.Header) []byte {
			ts := e.now.Add(-tl.DefaultTolerance - time.Second)
			h.Set("svix-timestamp", fmt.Sprint(ts.Unix()))
			h.Set("svix-signature", e.sign(t, "msg_row", ts, htJobCreated))
			return nil
		}), status: http.StatusUnauthorized, calls: none, loggedID: "msg_row"},
		htRow{name: "future", request: htTampered(func(t *testing.T, e *htEnv, h http.Header) []byte {
			ts := e.now.Add(tl.DefaultTolerance + time.Second)
			h.Set("svix-timestamp", fmt.Sprint(ts.Unix()))
			h.Set("svix-signature", e.sign(t, "msg_row", ts, htJobCreated))
			return nil
		}), status: http.StatusUnauthorized, calls: none, loggedID: "msg_row"},
	)
	for name, body := range map[string]string{
		"array": `["` + htCanary + `"]`, "string": `"` + htCanary + `"`, "number": `17`, "null": `null`,
		"empty": ``, "two objects": `{"a":"` + htCanary + `"} {}`, "trailing garbage": `{"a":1} ` + htCanary,
		"truncated": `{"job_id":"` + htCanary,
	} {
		rows = append(rows, htRow{name: "verified, not an object: " + name, request: htSigned([]byte(body)),
			status: http.StatusBadRequest, calls: none, loggedID: "msg_row"})
	}
	// A modelled member of the wrong JSON type is breaking drift: to
	// OnUnknown, and without it (nor OnAny) 500, so that Svix retries.
	for _, tc := range wrongTypeCases {
		rows = append(rows, htRow{name: "verified, wrong JSON type: " + tc.name, request: htSigned([]byte(tc.payload)),
			calls: map[string]int{"OnUnknown": 1}, canary: tc.secret, loggedID: "msg_row"},
			htRow{name: "verified, wrong JSON type, no OnUnknown: " + tc.name, setup: func(e *htEnv) { e.h.OnUnknown(nil) },
				request: htSigned([]byte(tc.payload)), status: http.StatusInternalServerError, calls: none, canary: tc.secret, loggedID: "msg_row"})
	}
	return rows
}

func TestHandlerStatusTable(t *testing.T) {
	bodies := map[int]map[string]bool{} // status -> distinct error bodies
	for _, row := range htStatusRows() {
		t.Run(row.name, func(t *testing.T) {
			e := newHTEnv(t, tl.WithMaxBodyBytes(htLimit))
			if row.setup != nil {
				row.setup(e)
			}
			method, body, h, chunked := row.request(t, e)
			resp := e.do(t, method, body, h, chunked)

			if row.status == 0 {
				assert.Truef(t, is2xx(resp.status), "status %d, want 2xx", resp.status)
			} else {
				assert.Equal(t, row.status, resp.status)
			}
			assert.Equal(t, row.calls, e.rec.counts(), "callbacks that ran")
			if resp.status == http.StatusMethodNotAllowed {
				assert.Equal(t, "POST", resp.header.Get("Allow"))
			}

			// What must never leak: the secret, the signature the handler
			// computes (svix's, for this id, timestamp and body), and the
			// payload.
			secrets := []string{e.secret, e.key, htCanary,
				strings.TrimPrefix(e.sign(t, h.Get("svix-id"), e.now, body), "v1,")}
			if row.canary != "" {
				secrets = append(secrets, row.canary)
			}
			logs := e.logs.String()
			for _, s := range secrets {
				assert.NotContains(t, string(resp.body), s, "response body leaks")
				assert.NotContains(t, logs, s, "logs leak")
			}
			if resp.status >= 400 {
				assert.LessOrEqual(t, len(resp.body), 64, "error body is short: %q", resp.body)
				if bodies[resp.status] == nil {
					bodies[resp.status] = map[string]bool{}
				}
				bodies[resp.status][string(resp.body)] = true
			}
			if row.loggedID != "" {
				assert.True(t, htLoggedID(t, e, row.loggedID), "logs carry the delivery id; logs:\n%s", logs)
			}
		})
	}
	// Each status answers with one fixed body, except 401, whose body
	// names its reason from a fixed list.
	reasons401 := map[string]bool{
		"missing webhook signature headers\n": true, "malformed webhook signature headers\n": true,
		"webhook timestamp too old\n": true, "webhook timestamp too new\n": true,
		"invalid webhook signature\n": true, "webhook authentication failed\n": true,
	}
	for status, set := range bodies {
		if status == http.StatusUnauthorized {
			for b := range set {
				assert.True(t, reasons401[b], "401 body %q is not one of the fixed reasons", b)
			}
			assert.Greater(t, len(set), 1, "each 401 reason has its own text")
			continue
		}
		assert.Lenf(t, set, 1, "status %d answers with one fixed body, got %v", status, set)
	}
}

func htLoggedID(t *testing.T, e *htEnv, id string) bool {
	for _, rec := range e.logs.records(t) {
		if rec["delivery_id"] == id {
			return true
		}
	}
	return false
}

func TestHandlerPanicKeepsServing(t *testing.T) {
	e := newHTEnv(t)
	var calls atomic.Int32
	e.h.OnJobCreated(func(ctx context.Context, ev *tl.JobCreated) error {
		if calls.Add(1) == 1 {
			panic("first delivery panics")
		}
		return nil
	})
	resp := e.post(t, "msg_panic_1", htJobCreated)
	assert.Equal(t, http.StatusInternalServerError, resp.status)
	resp = e.post(t, "msg_panic_2", htJobCreated)
	assert.True(t, is2xx(resp.status), "status %d after a panic", resp.status)
	assert.Equal(t, int32(2), calls.Load())

	var stack string
	for _, rec := range e.logs.records(t) {
		if rec["delivery_id"] == "msg_panic_1" {
			if s, ok := rec["stack"].(string); ok {
				stack = s
			}
		}
	}
	assert.Contains(t, stack, "handler_test.go", "the panic is logged with its stack")
}

func TestHandlerDispatchesFixtures(t *testing.T) {
	e := newHTEnv(t)
	for i, c := range fixtureCases {
		t.Run(strings.TrimSuffix(c.file, ".json"), func(t *testing.T) {
			before := e.rec.counts()
			payload := fixtureBytes(t, c.file)
			id := fmt.Sprintf("msg_fixture_%02d", i)
			resp := e.post(t, id, payload)
			require.Truef(t, is2xx(resp.status), "status %d", resp.status)

			after := e.rec.counts()
			for _, name := range htCallbacks {
				want := before[name]
				if name == c.callback {
					want++
				}
				assert.Equalf(t, want, after[name], "calls of %s", name)
			}
			call := e.rec.last(t)
			require.Equal(t, c.callback, call.name)
			require.IsType(t, c.want, call.ev)
			c.check(t, call.ev)
			assertMarshalsBack(t, c, call.ev, payload)

			// The Delivery in the callback's context.
			require.True(t, call.hasDeliv, "DeliveryFromContext in the callback")
			assert.Equal(t, id, call.delivery.ID)
			assert.True(t, e.now.Equal(call.delivery.Timestamp), call.delivery.Timestamp)
			var envelope struct {
				EventID *string `json:"event_id"`
			}
			require.NoError(t, json.Unmarshal(payload, &envelope))
			if envelope.EventID != nil {
				assert.Equal(t, *envelope.EventID, call.delivery.EventID)
				assert.Equal(t, *envelope.EventID, call.delivery.IdempotencyKey())
			} else {
				assert.Empty(t, call.delivery.EventID)
				assert.Equal(t, id, call.delivery.IdempotencyKey())
			}
		})
	}
}

func TestHandlerDispatchesOnlyRegisteredFamily(t *testing.T) {
	// With one callback registered, every other event is accepted (2xx)
	// without running it.
	e := newHTEnv(t)
	for _, name := range htCallbacks {
		t.Run(name, func(t *testing.T) {
			h, err := tl.NewHandler(e.secret, tl.WithClock(func() time.Time { return e.now }),
				tl.WithLogger(slog.New(slog.DiscardHandler)))
			require.NoError(t, err)
			rec := &htRecorder{}
			rec.registerAll(h)
			for _, other := range htCallbacks {
				if other != name {
					htUnregister(h, other)
				}
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			env := *e
			env.srv = srv
			env.rec = rec
			want := 0
			for i, c := range fixtureCases {
				resp := env.post(t, fmt.Sprintf("msg_only_%d", i), fixtureBytes(t, c.file))
				if c.breaking && name != "OnUnknown" {
					// Breaking drift without OnUnknown (or OnAny): 500.
					require.Equalf(t, http.StatusInternalServerError, resp.status, "%s", c.file)
					continue
				}
				require.Truef(t, is2xx(resp.status), "%s: status %d", c.file, resp.status)
				if c.callback == name {
					want++
				}
			}
			assert.Equal(t, map[string]int{name: want}, rec.counts())
		})
	}
}

func htUnregister(h *tl.Handler, name string) {
	switch name {
	case "OnJobCreated":
		h.OnJobCreated(nil)
	case "OnJobFailed":
		h.OnJobFailed(nil)
	case "OnJobCompleted":
		h.OnJobCompleted(nil)
	case "OnWorkflowCompleted":
		h.OnWorkflowCompleted(nil)
	case "OnSandboxEvent":
		h.OnSandboxEvent(nil)
	case "OnApplicationEvent":
		h.OnApplicationEvent(nil)
	case "OnRequestEvent":
		h.OnRequestEvent(nil)
	case "OnUnknown":
		h.OnUnknown(nil)
	default:
		panic("unknown callback " + name)
	}
}

func TestHandlerRegistrationWhileServing(t *testing.T) {
	e := newHTEnv(t)
	var viaA, viaB atomic.Int64
	fnA := func(context.Context, *tl.JobCreated) error { viaA.Add(1); return nil }
	fnB := func(context.Context, *tl.JobCreated) error { viaB.Add(1); return nil }
	e.h.OnJobCreated(fnA)

	stop := make(chan struct{})
	var regs sync.WaitGroup
	for g := range 4 {
		regs.Add(1)
		go func() {
			defer regs.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if (g+i)%2 == 0 {
					e.h.OnJobCreated(fnA)
				} else {
					e.h.OnJobCreated(fnB)
				}
				// Other registrations churn too.
				e.h.OnUnknown(func(context.Context, *tl.UnknownEvent) error { return nil })
				e.h.OnSandboxEvent(nil)
				runtime.Gosched()
			}
		}()
	}

	const requests = 120
	var senders sync.WaitGroup
	statuses := make([]int, requests)
	errs := make([]error, requests)
	for w := range 4 {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for i := w; i < requests; i += 4 {
				statuses[i], errs[i] = e.tryPost(fmt.Sprintf("msg_reg_%d", i), htJobCreated)
			}
		}()
	}
	senders.Wait()
	close(stop)
	regs.Wait()

	for i, s := range statuses {
		require.NoError(t, errs[i])
		assert.Truef(t, is2xx(s), "request %d: status %d", i, s)
	}
	assert.Equal(t, int64(requests), viaA.Load()+viaB.Load(), "each delivery ran exactly one registered callback")
}

func TestHandlerConcurrentDeliveries(t *testing.T) {
	e := newHTEnv(t)
	var mu sync.Mutex
	seen := map[string][]string{} // delivery id -> job ids seen
	e.h.OnJobCreated(func(ctx context.Context, ev *tl.JobCreated) error {
		d, ok := tl.DeliveryFromContext(ctx)
		if !ok {
			return errors.New("no delivery in context")
		}
		mu.Lock()
		seen[d.ID] = append(seen[d.ID], ev.JobID)
		mu.Unlock()
		return nil
	})

	const n = 200
	statuses := make([]int, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(fmt.Sprintf(`{"job_id":"parse_conc_%03d","status":"pending","created_at":"2023-10-01T12:00:00Z"}`, i))
			<-start
			statuses[i], errs[i] = e.tryPost(fmt.Sprintf("msg_conc_%03d", i), body)
		}()
	}
	close(start)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, seen, n)
	for i := range n {
		require.NoError(t, errs[i])
		assert.Truef(t, is2xx(statuses[i]), "delivery %d: status %d", i, statuses[i])
		assert.Equalf(t, []string{fmt.Sprintf("parse_conc_%03d", i)}, seen[fmt.Sprintf("msg_conc_%03d", i)],
			"delivery %d ran its callback exactly once with its own event", i)
	}
}

// htSpyBody records whether the handler read the request body.
type htSpyBody struct {
	r     io.Reader
	reads atomic.Int32
}

func (b *htSpyBody) Read(p []byte) (int, error) {
	b.reads.Add(1)
	return b.r.Read(p)
}

func (b *htSpyBody) Close() error { return nil }

func TestHandlerRejectsBeforeReadingBody(t *testing.T) {
	e := newHTEnv(t, tl.WithMaxBodyBytes(htLimit))
	tests := []struct {
		name   string
		method string
		length int64 // declared Content-Length; -1 for unknown
		edit   func(h http.Header)
		status int // 0 for any 2xx
		read   bool
	}{
		{name: "valid delivery reads the body", method: http.MethodPost, length: int64(len(htJobCreated)), status: 0, read: true},
		{name: "GET", method: http.MethodGet, length: int64(len(htJobCreated)), status: http.StatusMethodNotAllowed},
		{name: "PATCH", method: http.MethodPatch, length: int64(len(htJobCreated)), status: http.StatusMethodNotAllowed},
		{name: "declared length over the limit", method: http.MethodPost, length: htLimit + 1, status: http.StatusRequestEntityTooLarge},
		{name: "missing headers", method: http.MethodPost, length: -1, edit: func(h http.Header) {
			h.Del("svix-signature")
		}, status: http.StatusUnauthorized},
		{name: "malformed timestamp", method: http.MethodPost, length: -1, edit: func(h http.Header) {
			h.Set("svix-timestamp", "yesterday")
		}, status: http.StatusUnauthorized},
		{name: "stale", method: http.MethodPost, length: -1, edit: func(h http.Header) {
			h.Set("svix-timestamp", fmt.Sprint(e.now.Add(-tl.DefaultTolerance-time.Second).Unix()))
		}, status: http.StatusUnauthorized},
		{name: "future", method: http.MethodPost, length: -1, edit: func(h http.Header) {
			h.Set("svix-timestamp", fmt.Sprint(e.now.Add(tl.DefaultTolerance+time.Second).Unix()))
		}, status: http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spy := &htSpyBody{r: bytes.NewReader(htJobCreated)}
			req := httptest.NewRequest(tc.method, "/webhooks/tensorlake", nil)
			req.Body = spy
			req.ContentLength = tc.length
			req.Header = e.headers(t, "msg_spy", htJobCreated)
			if tc.edit != nil {
				tc.edit(req.Header)
			}
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			if tc.status == 0 {
				assert.Truef(t, is2xx(rec.Code), "status %d, want 2xx", rec.Code)
			} else {
				assert.Equal(t, tc.status, rec.Code)
			}
			assert.Equal(t, tc.read, spy.reads.Load() > 0, "body read")
		})
	}
}
