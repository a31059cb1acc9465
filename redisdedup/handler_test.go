package redisdedup_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/redisdedup"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// signedRequest builds a delivery signed now by svix's own library.
func signedRequest(t *testing.T, url, msgID string, body []byte) *http.Request {
	t.Helper()
	wh, err := svix.NewWebhook(testSecret)
	require.NoError(t, err)
	now := time.Now()
	sig, err := wh.Sign(msgID, now, body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("svix-id", msgID)
	req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	req.Header.Set("Content-Type", "application/json")
	return req
}

func post(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if !assert.NoError(t, err) {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// fixture returns a lifecycle event payload.
func fixture(t *testing.T) []byte {
	t.Helper()
	return tlwebhooktest.Sample(tlwebhook.EventTypeSandboxCreated)
}

// TestHandlerRedisDown: with Redis unreachable, a verified delivery gets 503
// and its callback never runs.
func TestHandlerRedisDown(t *testing.T) {
	body := fixture(t)
	h, err := tlwebhook.NewHandler(testSecret,
		tlwebhook.WithDeduplicator(newDedup(t, downClient(t))),
		tlwebhook.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	var runs atomic.Int32
	h.OnSandboxEvent(func(context.Context, *tlwebhook.SandboxEvent) error {
		runs.Add(1)
		return nil
	})
	srv := httptest.NewServer(h)
	defer srv.Close()

	assert.Equal(t, http.StatusServiceUnavailable, post(t, signedRequest(t, srv.URL, "msg_2z0RedisDown00000000000001", body)))
	assert.Zero(t, runs.Load())
}

// TestHandlerCompletesAfterClientGone: the sender hangs up while the
// callback runs (a proxy timeout, a dropped connection), and the callback
// then succeeds. Its success must still be recorded, so that the retry that
// follows gets 2xx and runs nothing. A Handler that records it with the
// request's context, canceled by then, cannot reach Redis whenever the
// client must open a connection (forced here by letting idle connections
// go stale at once), leaves the claim to expire and runs the callback a
// second time after the lease.
func TestHandlerCompletesAfterClientGone(t *testing.T) {
	addr := redisAddr(t)
	body := fixture(t)
	tests := []struct {
		name string
		opts []tlwebhook.HandlerOption
	}{
		{"default callback timeout", nil},
		{"no callback timeout", []tlwebhook.HandlerOption{tlwebhook.WithCallbackTimeout(0)}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := redis.NewClient(&redis.Options{Addr: addr, ConnMaxIdleTime: time.Millisecond})
			t.Cleanup(func() { _ = c.Close() })
			opts := append([]tlwebhook.HandlerOption{
				tlwebhook.WithDeduplicator(newDedup(t, c, redisdedup.WithPrefix(testPrefix(t, c)))),
				tlwebhook.WithLogger(slog.New(slog.DiscardHandler)),
			}, tt.opts...)
			h, err := tlwebhook.NewHandler(testSecret, opts...)
			require.NoError(t, err)
			var runs atomic.Int32
			h.OnSandboxEvent(func(ctx context.Context, _ *tlwebhook.SandboxEvent) error {
				if runs.Add(1) == 1 {
					<-ctx.Done()                      // the sender has gone
					time.Sleep(20 * time.Millisecond) // finishing the side effect
				}
				return nil
			})
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			msgID := fmt.Sprintf("msg_2z0RedisGone%013d", i)

			ctx, cancel := context.WithCancel(context.Background())
			req := signedRequest(t, srv.URL, msgID, body).WithContext(ctx)
			go func() {
				for runs.Load() == 0 {
					time.Sleep(time.Millisecond)
				}
				cancel()
			}()
			_, err = http.DefaultClient.Do(req)
			require.ErrorIs(t, err, context.Canceled)

			// The retry arrives once the first callback has returned.
			// Until then it meets the claim (409); the wait stays well
			// under the 30s lease, after which an unsettled claim would
			// let the retry run the callback again.
			var status int
			require.Eventually(t, func() bool {
				status = post(t, signedRequest(t, srv.URL, msgID, body))
				return status != http.StatusConflict
			}, 20*time.Second, 20*time.Millisecond, "the claim of the finished callback is never settled")
			assert.Equal(t, http.StatusNoContent, status)
			assert.Equal(t, int32(1), runs.Load(), "callback runs")
		})
	}
}
