package tlwebhook_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tl "github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

func quietHandler(t *testing.T, secret string, opts ...tl.HandlerOption) *tl.Handler {
	t.Helper()
	h, err := tl.NewHandler(secret, append([]tl.HandlerOption{tl.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	require.NoError(t, err)
	return h
}

// post sends one signed delivery of body to srv, as a new message, and
// returns the response.
func post(t *testing.T, srv *httptest.Server, secret string, body []byte) *http.Response {
	return postID(t, srv, secret, tlwebhooktest.NewMessageID(), body)
}

// postID sends one signed delivery of body with message id id.
func postID(t *testing.T, srv *httptest.Server, secret, id string, body []byte) *http.Response {
	t.Helper()
	s, err := tlwebhooktest.NewSigner(secret)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/tensorlake", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header = s.HeaderFor(id, time.Now(), body)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestProcess runs payloads verified earlier through Process: the callback
// runs with the delivery in its context and its error comes back.
func TestProcess(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	h := quietHandler(t, secret)
	d := tl.Delivery{ID: "msg_1", Timestamp: time.Unix(1785000000, 0)}
	var got tl.Delivery
	boom := errors.New("downstream down")
	h.OnSandboxEvent(func(ctx context.Context, ev *tl.SandboxEvent) error {
		got, _ = tl.DeliveryFromContext(ctx)
		if ev.Type() == tl.EventTypeSandboxFailed {
			return boom
		}
		return nil
	})
	h.OnJobFailed(func(context.Context, *tl.JobFailed) error { return tl.Permanent(boom) })
	h.OnJobCreated(func(context.Context, *tl.JobCreated) error { panic("bug") })

	require.NoError(t, h.Process(t.Context(), d, tlwebhooktest.Sample(tl.EventTypeSandboxCreated)))
	assert.Equal(t, "msg_1", got.ID)
	assert.Equal(t, "evt_019f95fb-7f33-7000-8000-000000000001", got.EventID, "the envelope's event id is set")

	err := h.Process(t.Context(), d, tlwebhooktest.Sample(tl.EventTypeSandboxFailed))
	assert.ErrorIs(t, err, boom)
	assert.NotErrorIs(t, err, tl.ErrPermanent)

	err = h.Process(t.Context(), d, tlwebhooktest.Sample(tl.EventTypeJobFailed))
	assert.ErrorIs(t, err, boom)
	assert.ErrorIs(t, err, tl.ErrPermanent)

	err = h.Process(t.Context(), d, tlwebhooktest.Sample(tl.EventTypeJobCreated))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "callback panicked: bug")

	assert.NoError(t, h.Process(t.Context(), d, tlwebhooktest.Sample(tl.EventTypeApplicationCreated)), "no callback: nil")

	err = h.Process(t.Context(), d, []byte(`{"status":"pending","status":"failure"}`))
	assert.ErrorIs(t, err, tl.ErrInvalidPayload)
	assert.ErrorIs(t, err, tl.ErrPermanent, "retrying cannot fix a payload that does not decode")
}

// TestProcessWithDeduplicator checks that Process claims like ServeHTTP: a
// completed message is not run again, one in progress is an error.
func TestProcessWithDeduplicator(t *testing.T) {
	dedup, err := tl.NewMemoryDeduplicator()
	require.NoError(t, err)
	h := quietHandler(t, tlwebhooktest.NewSecret(), tl.WithDeduplicator(dedup))
	runs := 0
	h.OnJobCompleted(func(context.Context, *tl.JobCompleted) error { runs++; return nil })
	d := tl.Delivery{ID: "msg_d"}
	body := tlwebhooktest.Sample(tl.EventTypeJobCompleted)
	require.NoError(t, h.Process(t.Context(), d, body))
	require.NoError(t, h.Process(t.Context(), d, body))
	assert.Equal(t, 1, runs)

	_, res, err := dedup.Claim(t.Context(), "msg_busy")
	require.NoError(t, err)
	require.Equal(t, tl.ClaimAcquired, res)
	err = h.Process(t.Context(), tl.Delivery{ID: "msg_busy"}, body)
	assert.ErrorIs(t, err, tl.ErrInProgress)
	assert.Equal(t, 1, runs)
}

// memInbox is an Inbox in memory that can be made to fail.
type memInbox struct {
	mu       sync.Mutex
	keys     map[string][]byte
	fail     error
	enqueues int
}

func (m *memInbox) Enqueue(_ context.Context, d tl.Delivery, payload []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.enqueues++
	if m.fail != nil {
		return m.fail
	}
	if m.keys == nil {
		m.keys = map[string][]byte{}
	}
	if _, ok := m.keys[d.IdempotencyKey()]; !ok {
		m.keys[d.IdempotencyKey()] = append([]byte(nil), payload...)
	}
	return nil
}

// TestInbox checks WithInbox: verified deliveries are recorded and answered
// 204 without running callbacks; a failing inbox gets 503; forged and
// undecodable deliveries are not recorded.
func TestInbox(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	ib := &memInbox{}
	obs := &obsRecorder{}
	h := quietHandler(t, secret, tl.WithInbox(ib), tl.WithObserver(obs))
	ran := 0
	h.OnAny(func(context.Context, tl.Event) error { ran++; return nil })
	srv := httptest.NewServer(h)
	defer srv.Close()

	body := tlwebhooktest.Sample(tl.EventTypeSandboxFailed)
	assert.Equal(t, http.StatusNoContent, post(t, srv, secret, body).StatusCode)
	assert.Equal(t, http.StatusNoContent, post(t, srv, secret, body).StatusCode, "a copy is recorded once")
	assert.Zero(t, ran, "callbacks run later, in the worker")
	require.Len(t, ib.keys, 1)
	assert.Equal(t, body, ib.keys["evt_019f95fb-7f33-7000-8000-000000000006"], "keyed by the event id, payload as received")

	assert.Equal(t, http.StatusUnauthorized, post(t, srv, tlwebhooktest.NewSecret(), body).StatusCode)
	assert.Equal(t, http.StatusBadRequest, post(t, srv, secret, []byte(`{"a":1,"a":2}`)).StatusCode)
	assert.Equal(t, 2, ib.enqueues, "forged and undecodable deliveries never reach the inbox")

	ib.fail = errors.New("database down")
	assert.Equal(t, http.StatusServiceUnavailable, post(t, srv, secret, body).StatusCode)

	outcomes := obs.outcomes()
	assert.Equal(t, []string{"enqueued 204", "enqueued 204", "rejected 401", "rejected 400", "failed 503"}, outcomes)

	// The worker side: Process runs the recorded payload.
	require.NoError(t, h.Process(t.Context(), tl.Delivery{ID: "msg_w"}, ib.keys["evt_019f95fb-7f33-7000-8000-000000000006"]))
	assert.Equal(t, 1, ran)
}

// obsRecorder is an Observer that records what it is told.
type obsRecorder struct {
	mu  sync.Mutex
	obs []tl.Observation
}

func (o *obsRecorder) Observe(_ context.Context, ob tl.Observation) {
	o.mu.Lock()
	o.obs = append(o.obs, ob)
	o.mu.Unlock()
}

func (o *obsRecorder) outcomes() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, ob := range o.obs {
		s := string(ob.Outcome)
		if ob.Status != 0 {
			s += " " + strconv.Itoa(ob.Status)
		}
		out = append(out, s)
	}
	return out
}

// TestObserver checks the Observation of each row of the Handler's status
// table: outcome, status, event type, error and duration.
func TestObserver(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	obs := &obsRecorder{}
	dedup, err := tl.NewMemoryDeduplicator()
	require.NoError(t, err)
	h := quietHandler(t, secret, tl.WithObserver(obs), tl.WithDeduplicator(dedup), tl.WithCallbackTimeout(time.Second))
	boom := errors.New("boom")
	h.OnJobCompleted(func(context.Context, *tl.JobCompleted) error { time.Sleep(time.Millisecond); return nil })
	h.OnJobFailed(func(context.Context, *tl.JobFailed) error { return boom })
	h.OnJobCreated(func(context.Context, *tl.JobCreated) error { return tl.Permanent(boom) })
	h.OnSandboxEvent(func(ctx context.Context, _ *tl.SandboxEvent) error { <-ctx.Done(); return nil })
	srv := httptest.NewServer(h)
	defer srv.Close()

	completed := tlwebhooktest.Sample(tl.EventTypeJobCompleted)
	postID(t, srv, secret, "msg_same", completed)
	postID(t, srv, secret, "msg_same", completed) // a copy: duplicate, 204
	post(t, srv, secret, tlwebhooktest.Sample(tl.EventTypeJobFailed))
	post(t, srv, secret, tlwebhooktest.Sample(tl.EventTypeJobCreated))
	post(t, srv, secret, tlwebhooktest.Sample(tl.EventTypeSandboxRunning))
	post(t, srv, secret, tlwebhooktest.Sample(tl.EventTypeApplicationCreated))
	post(t, srv, tlwebhooktest.NewSecret(), completed)
	post(t, srv, secret, []byte(`[]`))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.NoError(t, h.Process(t.Context(), tl.Delivery{ID: "msg_p"}, tlwebhooktest.Sample(tl.EventTypeRequestFailed)))

	obs.mu.Lock()
	defer obs.mu.Unlock()
	type row struct {
		outcome tl.DeliveryOutcome
		status  int
		typ     tl.EventType
		err     error
		ran     bool
	}
	want := []row{
		{tl.DeliveryProcessed, 204, tl.EventTypeJobCompleted, nil, true},
		{tl.DeliveryDuplicate, 204, tl.EventTypeJobCompleted, nil, false},
		{tl.DeliveryFailed, 500, tl.EventTypeJobFailed, boom, true},
		{tl.DeliveryFailed, 500, tl.EventTypeJobCreated, tl.ErrPermanent, true},
		{tl.DeliveryFailed, 503, tl.EventTypeSandboxRunning, context.DeadlineExceeded, true},
		{tl.DeliveryProcessed, 204, tl.EventTypeApplicationCreated, nil, false},
		{tl.DeliveryRejected, 401, "", tl.ErrNoMatchingSignature, false},
		{tl.DeliveryRejected, 400, "", tl.ErrInvalidPayload, false},
		{tl.DeliveryRejected, 405, "", tl.ErrMethodNotAllowed, false},
		{tl.DeliveryProcessed, 0, tl.EventTypeRequestFailed, nil, false},
	}
	require.Len(t, obs.obs, len(want))
	for i, w := range want {
		o := obs.obs[i]
		assert.Equal(t, w.outcome, o.Outcome, "row %d", i)
		assert.Equal(t, w.status, o.Status, "row %d", i)
		assert.Equal(t, w.typ, o.EventType, "row %d", i)
		if w.err != nil {
			assert.ErrorIs(t, o.Err, w.err, "row %d", i)
		} else if w.status < 400 {
			assert.NoError(t, o.Err, "row %d", i)
		}
		assert.Equal(t, w.ran, o.Duration > 0, "row %d: duration %v", i, o.Duration)
		if w.status != 405 {
			assert.NotEmpty(t, o.Delivery.ID, "row %d", i)
		}
	}
}

// TestAbortOnlyOnCallbackFailure checks that webhook-delivery: abort-message
// is sent only with a 500 from a Permanent callback error, never with a 503
// (timeout, inbox or deduplicator), which asks Svix to retry.
func TestAbortOnlyOnCallbackFailure(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	serve := func(h *tl.Handler) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, tlwebhooktest.NewRequest(secret, "/", tlwebhooktest.Sample(tl.EventTypeJobFailed)))
		return rec
	}
	t.Run("inbox returns Permanent", func(t *testing.T) {
		h := quietHandler(t, secret, tl.WithInbox(&memInbox{fail: tl.Permanent(errors.New("schema mismatch"))}))
		rec := serve(h)
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Empty(t, rec.Header().Get(tl.HeaderWebhookDelivery))
	})
	t.Run("callback overruns and returns Permanent", func(t *testing.T) {
		h := quietHandler(t, secret, tl.WithCallbackTimeout(10*time.Millisecond))
		h.OnJobFailed(func(ctx context.Context, _ *tl.JobFailed) error { <-ctx.Done(); return tl.Permanent(ctx.Err()) })
		rec := serve(h)
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Empty(t, rec.Header().Get(tl.HeaderWebhookDelivery))
	})
	t.Run("callback returns Permanent", func(t *testing.T) {
		h := quietHandler(t, secret)
		h.OnJobFailed(func(context.Context, *tl.JobFailed) error { return tl.Permanent(errors.New("gone")) })
		rec := serve(h)
		assert.Equal(t, http.StatusInternalServerError, rec.Code)
		assert.Equal(t, "abort-message", rec.Header().Get(tl.HeaderWebhookDelivery))
	})
}

// TestCallbackGoexitReleasesItsClaim checks that a callback that ends its
// goroutine (runtime.Goexit) neither leaves its claim renewed forever nor
// blocks the message: the claim is released, so a retry runs.
func TestCallbackGoexitReleasesItsClaim(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	dedup, err := tl.NewMemoryDeduplicator(tl.WithLease(150 * time.Millisecond))
	require.NoError(t, err)
	h := quietHandler(t, secret, tl.WithDeduplicator(dedup))
	exit := true
	var runs int
	h.OnJobCompleted(func(context.Context, *tl.JobCompleted) error {
		runs++
		if exit {
			runtime.Goexit()
		}
		return nil
	})
	body := tlwebhooktest.Sample(tl.EventTypeJobCompleted)
	signer, err := tlwebhooktest.NewSigner(secret)
	require.NoError(t, err)
	header := signer.Header(body)
	serve := func() int {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header = header.Clone()
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { defer close(done); h.ServeHTTP(rec, req) }()
		<-done
		return rec.Code
	}
	serve() // the callback exits its goroutine
	exit = false
	assert.Equal(t, http.StatusNoContent, serve(), "the retry runs at once: the claim was released, not left renewed")
	assert.Equal(t, 2, runs)
}
