package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines to write
// while the test reads it. (Examples import no internal package, so that
// they can be copied as they are.)
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func post(t *testing.T, url string, body []byte, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestServer(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	logs := &syncBuffer{}
	srv, err := newServer(secret, slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err)
	assert.Positive(t, srv.ReadHeaderTimeout)
	assert.Positive(t, srv.ReadTimeout)
	assert.Positive(t, srv.WriteTimeout)
	assert.Positive(t, srv.IdleTimeout)

	ts := httptest.NewServer(srv.Handler)
	defer ts.Close()
	url := ts.URL + webhookPath
	signer, err := tlwebhooktest.NewSigner(secret)
	require.NoError(t, err)

	for _, typ := range tlwebhook.EventTypes() {
		t.Run(string(typ), func(t *testing.T) {
			body := tlwebhooktest.Sample(typ)
			h := signer.Header(body)
			require.Equal(t, http.StatusNoContent, post(t, url, body, h))
			assert.Regexp(t, `msg="tensorlake event" event_type=`+regexp.QuoteMeta(string(typ))+
				` delivery_id=`+h.Get("svix-id")+` (job_id|workflow_name|event_id)=\S+`, logs.String())
		})
	}
	assert.NotContains(t, logs.String(), "Error message describing the failure", "payload text logged")
	assert.Contains(t, logs.String(), "sandbox_id=9q2j1f4n6y8x0r3k5m7pa")

	body := tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)
	forger, err := tlwebhooktest.NewSigner(tlwebhooktest.NewSecret())
	require.NoError(t, err)
	stale, err := tlwebhooktest.NewSigner(secret)
	require.NoError(t, err)
	stale.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	rejections := []struct {
		name   string
		method string
		url    string
		header http.Header
		want   int
	}{
		{"forged", http.MethodPost, url, forger.Header(body), http.StatusUnauthorized},
		{"stale", http.MethodPost, url, stale.Header(body), http.StatusUnauthorized},
		{"unsigned", http.MethodPost, url, http.Header{}, http.StatusUnauthorized},
		{"GET", http.MethodGet, url, signer.Header(nil), http.StatusMethodNotAllowed},
		{"other path", http.MethodPost, ts.URL + "/webhooks", signer.Header(body), http.StatusNotFound},
	}
	for _, tt := range rejections {
		t.Run(tt.name, func(t *testing.T) {
			before := strings.Count(logs.String(), `msg="tensorlake event"`)
			req, err := http.NewRequest(tt.method, tt.url, bytes.NewReader(body))
			require.NoError(t, err)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tt.want, resp.StatusCode)
			assert.Equal(t, before, strings.Count(logs.String(), `msg="tensorlake event"`), "an event was logged")
		})
	}
	assert.NotContains(t, logs.String(), strings.TrimPrefix(secret, "whsec_"))
}

func TestNewServerInvalidSecret(t *testing.T) {
	_, err := newServer("whsec_short", slog.New(slog.DiscardHandler))
	assert.ErrorIs(t, err, tlwebhook.ErrInvalidSecret)
}

func TestRun(t *testing.T) {
	t.Run("secret not set", func(t *testing.T) {
		var stderr syncBuffer
		code := run(t.Context(), nil, func(string) string { return "" }, &stderr)
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr.String(), "TENSORLAKE_WEBHOOK_SECRET is not set")
	})
	t.Run("invalid secret", func(t *testing.T) {
		var stderr syncBuffer
		code := run(t.Context(), nil, func(string) string { return "not-base64!" }, &stderr)
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr.String(), "invalid secret")
		assert.NotContains(t, stderr.String(), "not-base64!")
	})
	t.Run("bad flag", func(t *testing.T) {
		var stderr syncBuffer
		assert.Equal(t, 2, run(t.Context(), []string{"-port", "1"}, func(string) string { return "" }, &stderr))
	})

	t.Run("serves until cancelled", func(t *testing.T) {
		secret := tlwebhooktest.NewSecret()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var stderr syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, func(k string) string {
				if k == envSecret {
					return secret
				}
				return ""
			}, &stderr)
		}()
		var addr string
		require.Eventually(t, func() bool {
			m := regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(stderr.String())
			if m != nil {
				addr = m[1]
			}
			return m != nil
		}, time.Minute, 5*time.Millisecond)

		signer, err := tlwebhooktest.NewSigner(secret)
		require.NoError(t, err)
		body := tlwebhooktest.Sample(tlwebhook.EventTypeRequestFailed)
		assert.Equal(t, http.StatusNoContent, post(t, "http://"+addr+webhookPath, body, signer.Header(body)))
		assert.Contains(t, stderr.String(), "request_id=req_01k0def")

		cancel()
		select {
		case code := <-done:
			assert.Equal(t, 0, code)
		case <-time.After(10 * time.Second):
			t.Fatal("server did not stop")
		}
		assert.Contains(t, stderr.String(), "msg=stopped")
	})
}
