package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// Tests of send's answers (issue 22 item 5) and of send -request, the
// replay of a captured delivery (issue 21 item 6).

// replayReceiver is a real tlwebhook.Handler behind an httptest.Server that
// records what its callbacks and the HTTP layer saw.
type replayReceiver struct {
	url string
	mu  sync.Mutex
	got []replayed
}

type replayed struct {
	delivery tlwebhook.Delivery
	jobID    string
	header   http.Header // the request's header
}

func newReplayReceiver(t *testing.T, key string) *replayReceiver {
	t.Helper()
	h, err := tlwebhook.NewHandler(key, quietLogger(t))
	require.NoError(t, err)
	rr := &replayReceiver{}
	headers := make(map[string]http.Header) // by message id, set before the callback runs
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		d, _ := tlwebhook.DeliveryFromContext(ctx)
		rr.mu.Lock()
		defer rr.mu.Unlock()
		rr.got = append(rr.got, replayed{delivery: d, jobID: ev.JobID, header: headers[d.ID]})
		return nil
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rr.mu.Lock()
		headers[r.Header.Get(tlwebhook.HeaderSvixID)] = r.Header.Clone()
		rr.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rr.url = srv.URL
	return rr
}

func (rr *replayReceiver) deliveries() []replayed {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return append([]replayed(nil), rr.got...)
}

// TestSendRequest replays captures into a receiver with another key: the
// callback sees the captured payload and message id, signed afresh.
func TestSendRequest(t *testing.T) {
	body := bytes.Replace(tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted), []byte("parse_XXX"), []byte("parse_replayed_42"), 1)
	require.Contains(t, string(body), "parse_replayed_42")
	const id = "msg_captured_1"
	captureKey := tlwebhooktest.NewSecret()
	hourAgo := time.Now().Add(-time.Hour)
	sig := signer(captureKey).Sign(id, hourAgo, body)
	ts := strconv.FormatInt(hourAgo.Unix(), 10)

	tests := []struct {
		name    string
		headers []string
	}{
		{"svix headers", []string{"Svix-Id: " + id, "Svix-Timestamp: " + ts, "Svix-Signature: " + sig}},
		{"webhook headers", []string{"Webhook-Id: " + id, "Webhook-Timestamp: " + ts, "Webhook-Signature: " + sig}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			staging := tlwebhooktest.NewSecret()
			rr := newReplayReceiver(t, staging)
			capture := rawRequest(append(tt.headers, "Authorization: Basic c2VjcmV0OnNlY3JldA=="), string(body), true)
			capture = strings.Replace(capture, "Content-Type: application/json", "Content-Type: application/json; charset=utf-8", 1)

			// As captured, an hour old and signed with another key: refused.
			header, _, _, err := readRequest([]byte(capture))
			require.NoError(t, err)
			direct, err := post(t.Context(), http.DefaultClient, rr.url, body, header)
			require.NoError(t, err)
			require.Equal(t, http.StatusUnauthorized, direct.status)

			r := runCmd(t, "", noEnv, "send", "-url", rr.url, "-secret", staging, "-request", writeTemp(t, []byte(capture)))
			require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
			assert.Regexp(t, `(?m)^sent 1/1 status=204 latency=\S+ event=tensorlake\.document_ingestion\.job\.completed delivery=`+id+`$`, r.stdout)
			got := rr.deliveries()
			require.Len(t, got, 1)
			assert.Equal(t, id, got[0].delivery.ID, "the same message id")
			assert.Equal(t, "parse_replayed_42", got[0].jobID, "the captured payload")
			assert.WithinDuration(t, time.Now(), got[0].delivery.Timestamp, time.Minute, "a fresh timestamp")
			assert.Equal(t, "application/json; charset=utf-8", got[0].header.Get("Content-Type"), "the captured Content-Type")
			assert.Empty(t, got[0].header.Get("Authorization"), "captured credentials are not sent")
			assert.Empty(t, got[0].header.Get(tlwebhook.HeaderWebhookSignature), "the captured signature is not sent")
		})
	}

	t.Run("Ed25519 key, repeated", func(t *testing.T) {
		sk, pk := tlwebhooktest.NewKeyPair()
		rr := newReplayReceiver(t, pk)
		capture := rawRequest([]string{"Svix-Id: " + id, "Svix-Timestamp: " + ts, "Svix-Signature: " + sig}, string(body), true)
		r := runCmd(t, capture, noEnv, "send", "-url", rr.url, "-secret", sk, "-request", "-", "-n", "2")
		require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
		got := rr.deliveries()
		require.Len(t, got, 2)
		for _, d := range got {
			assert.Equal(t, id, d.delivery.ID, "every copy carries the captured id")
			assert.True(t, strings.HasPrefix(d.header.Get(tlwebhook.HeaderSvixSignature), "v1a,"), d.header.Get(tlwebhook.HeaderSvixSignature))
		}
	})

	t.Run("capture without a message id", func(t *testing.T) {
		r := runCmd(t, "", noEnv, "send", "-url", "http://127.0.0.1:1/", "-secret", captureKey, "-request",
			writeTemp(t, []byte(rawRequest([]string{"Svix-Timestamp: " + ts}, string(body), true))))
		assert.Equal(t, exitFailure, r.code)
		assert.Contains(t, r.stderr, "no svix-id or webhook-id header: a replay needs the delivery's message id")
		assert.Empty(t, r.stdout, "nothing sent")
	})

	t.Run("not a request", func(t *testing.T) {
		r := runCmd(t, "not a request\n\n", noEnv, "send", "-secret", captureKey, "-request", "-")
		assert.Equal(t, exitFailure, r.code)
		assert.Contains(t, r.stderr, "-: not an HTTP request")
	})

	t.Run("with -event", func(t *testing.T) {
		r := runCmd(t, "", noEnv, "send", "-secret", captureKey, "-request", "x.http", "-event", "all")
		assert.Equal(t, exitUsage, r.code)
		assert.Contains(t, r.stderr, "give exactly one of -event, -file and -request")
	})
}

// TestSendRequestFromListenSave replays a delivery captured by listen -save
// into another receiver.
func TestSendRequestFromListenSave(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	dir := t.TempDir()
	url, out, _ := startListen(t, "-secret", secret, "-save", dir)
	r := runCmd(t, "", noEnv, "send", "-url", url, "-secret", secret, "-event", "job.completed")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	id := regexp.MustCompile(`delivery=(msg_\S+)`).FindStringSubmatch(r.stdout)[1]
	file := waitFor(t, out, `(?m)^saved file=(\S+) delivery=`+regexp.QuoteMeta(id)+`$`)

	staging := tlwebhooktest.NewSecret()
	rr := newReplayReceiver(t, staging)
	r = runCmd(t, "", noEnv, "send", "-url", rr.url, "-secret", staging, "-request", file)
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	got := rr.deliveries()
	require.Len(t, got, 1)
	assert.Equal(t, id, got[0].delivery.ID)
	assert.Equal(t, "parse_XXX", got[0].jobID)
}

// TestSendShowsWhy checks that a non-2xx answer's line carries the start
// of its body as the reason, and -v the answer's headers.
func TestSendShowsWhy(t *testing.T) {
	t.Run("tlwebhook receiver", func(t *testing.T) {
		secret := tlwebhooktest.NewSecret()
		h, err := tlwebhook.NewHandler(secret, quietLogger(t))
		require.NoError(t, err)
		srv := httptest.NewServer(h)
		defer srv.Close()

		r := runCmd(t, "", noEnv, "send", "-url", srv.URL, "-secret", tlwebhooktest.NewSecret(), "-event", "job.created")
		assert.Equal(t, exitFailure, r.code)
		assert.Regexp(t, `(?m)^sent 1/1 status=401 latency=\S+ event=\S+ delivery=msg_\S+ reason="invalid webhook signature"$`, r.stdout)
		assert.NotContains(t, r.stdout, "< ", "headers only with -v")

		r = runCmd(t, "", noEnv, "send", "-url", srv.URL, "-secret", secret, "-event", "job.created", "-v")
		assert.Equal(t, exitOK, r.code)
		assert.Regexp(t, `(?m)^sent 1/1 status=204 latency=\S+ event=\S+ delivery=msg_\S+$`, r.stdout, "no reason for a 2xx")
		assert.Regexp(t, `(?m)^< Date: .+$`, r.stdout)
	})

	long := strings.Repeat("é", 150) // 300 bytes
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-Reason", "one")
		w.Header().Add("X-Reason", "two")
		w.Header().Set("Retry-After", "30")
		switch r.URL.Path {
		case "/multiline":
			http.Error(w, "bad gateway:\n\tupstream\x00 down  ", http.StatusBadGateway)
		case "/long":
			http.Error(w, long, http.StatusServiceUnavailable)
		case "/ok":
			_, _ = w.Write([]byte("accepted"))
		}
	}))
	defer srv.Close()
	secret := tlwebhooktest.NewSecret()
	send := func(path string, extra ...string) result {
		return runCmd(t, "", noEnv, append([]string{"send", "-url", srv.URL + path, "-secret", secret, "-event", "job.created"}, extra...)...)
	}

	r := send("/multiline", "-v")
	assert.Equal(t, exitFailure, r.code)
	lines := strings.Split(r.stdout, "\n")
	require.GreaterOrEqual(t, len(lines), 6, r.stdout)
	assert.Regexp(t, `^sent 1/1 status=502 .* reason="bad gateway: upstream\x{fffd} down"$`, lines[0], "one line, control characters replaced")
	assert.Equal(t, []string{
		"< Content-Length: 31",
		"< Content-Type: text/plain; charset=utf-8",
	}, lines[1:3])
	assert.Regexp(t, `^< Date: `, lines[3])
	assert.Equal(t, []string{
		"< Retry-After: 30",
		"< X-Content-Type-Options: nosniff",
		"< X-Reason: one",
		"< X-Reason: two",
	}, lines[4:8])
	assert.True(t, strings.HasPrefix(lines[8], "summary "), lines[8])

	r = send("/long")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stdout, " reason="+strings.Repeat("é", 100)+"...\n", "the reason is cut at 200 bytes")

	r = send("/ok")
	assert.Equal(t, exitOK, r.code)
	assert.NotContains(t, r.stdout, "reason=")
}
