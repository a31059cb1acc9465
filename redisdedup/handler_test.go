package redisdedup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/redisdedup"
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

// fixture returns a lifecycle event payload and its event_id, the key the
// Handler deduplicates on.
func fixture(t *testing.T) (body []byte, eventID string) {
	t.Helper()
	body, err := os.ReadFile("../testdata/sandbox_created.json")
	require.NoError(t, err)
	ev, err := tlwebhook.ParseEvent(body)
	require.NoError(t, err)
	sb, ok := ev.(*tlwebhook.SandboxEvent)
	require.True(t, ok, "fixture is a %T", ev)
	require.NotEmpty(t, sb.EventID)
	return body, sb.EventID
}

// replicas starts n Handlers, each with its own Redis client and server, as
// n processes of one service would be, all running fn as their sandbox
// callback.
func replicas(t *testing.T, addr, prefix string, n int, fn func(context.Context, *tlwebhook.SandboxEvent) error) []string {
	t.Helper()
	urls := make([]string, n)
	for i := range urls {
		c := newClient(t, addr)
		h, err := tlwebhook.NewHandler(testSecret,
			tlwebhook.WithDeduplicator(redisdedup.New(c, redisdedup.WithPrefix(prefix))),
			tlwebhook.WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(t, err)
		h.OnSandboxEvent(fn)
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		urls[i] = srv.URL
	}
	return urls
}

// TestHandlersShareRedis: 8 Handlers over one Redis receive 50 concurrent
// copies of one signed delivery, spread over them. The callback runs once.
// It holds until every other copy has been answered, so all of those meet
// the claim in progress and must get 409; a copy sent after it finished
// gets 2xx and runs nothing.
func TestHandlersShareRedis(t *testing.T) {
	addr := redisAddr(t)
	body, _ := fixture(t)
	const (
		handlers = 8
		copies   = 50
	)
	tests := []struct {
		name  string
		msgID func(i int) string
	}{
		{"same message", func(int) string { return "msg_2z0Redis000000000000000001" }},
		{"same event_id in different messages", func(i int) string { return fmt.Sprintf("msg_2z0Redis%018d", i) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var runs, conflicts atomic.Int32
			allOthersAnswered := make(chan struct{})
			var answerOnce sync.Once
			othersAnswered := func() { answerOnce.Do(func() { close(allOthersAnswered) }) }
			urls := replicas(t, addr, testPrefix(t, newClient(t, addr)), handlers,
				func(context.Context, *tlwebhook.SandboxEvent) error {
					runs.Add(1)
					select {
					case <-allOthersAnswered:
					case <-time.After(5 * time.Second): // a second run never sees the others answered
					}
					return nil
				})

			statuses := make([]int, copies)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range copies {
				req := signedRequest(t, urls[i%handlers], tt.msgID(i), body)
				wg.Go(func() {
					<-start
					statuses[i] = post(t, req)
					if statuses[i] == http.StatusConflict && conflicts.Add(1) == copies-1 {
						othersAnswered()
					}
				})
			}
			close(start)
			wg.Wait()
			othersAnswered() // should a second run wait, it need wait no more

			count := map[int]int{}
			for _, s := range statuses {
				count[s]++
			}
			assert.Equal(t, int32(1), runs.Load(), "callback runs")
			assert.Equal(t, map[int]int{http.StatusNoContent: 1, http.StatusConflict: copies - 1}, count)

			for i, url := range urls {
				status := post(t, signedRequest(t, url, tt.msgID(copies+i), body))
				assert.Equal(t, http.StatusNoContent, status, "late copy to handler %d", i)
			}
			assert.Equal(t, int32(1), runs.Load(), "callback runs after late copies")
		})
	}
}

// TestHandlersRetryAfterFailure: a callback that fails on one replica
// releases its claim, so Svix's retry, reaching another replica, runs it
// again; after a success, copies run nothing.
func TestHandlersRetryAfterFailure(t *testing.T) {
	addr := redisAddr(t)
	body, _ := fixture(t)
	var runs atomic.Int32
	urls := replicas(t, addr, testPrefix(t, newClient(t, addr)), 3,
		func(context.Context, *tlwebhook.SandboxEvent) error {
			if runs.Add(1) == 1 {
				return errors.New("downstream unavailable")
			}
			return nil
		})
	const msgID = "msg_2z0RedisRetry0000000000001"
	for i, want := range []struct {
		status int
		runs   int32
	}{
		{http.StatusInternalServerError, 1},
		{http.StatusNoContent, 2},
		{http.StatusNoContent, 2},
	} {
		status := post(t, signedRequest(t, urls[i], msgID, body))
		assert.Equal(t, want.status, status, "attempt %d", i+1)
		assert.Equal(t, want.runs, runs.Load(), "runs after attempt %d", i+1)
	}
}

// TestHandlersAfterCrash: a replica that claimed the message and crashed
// leaves a claim behind; retries get 409 until its lease passes, then run.
// The crashed replica, were it to wake up, cannot release the new claim.
func TestHandlersAfterCrash(t *testing.T) {
	addr := redisAddr(t)
	body, eventID := fixture(t)
	c := newClient(t, addr)
	prefix := testPrefix(t, c)
	const lease = 300 * time.Millisecond

	crashed := redisdedup.New(c, redisdedup.WithPrefix(prefix), redisdedup.WithLease(lease))
	staleToken, res, err := crashed.Claim(context.Background(), eventID)
	require.NoError(t, err)
	require.Equal(t, tlwebhook.Claimed, res)
	claimedAt := time.Now()

	var runs atomic.Int32
	release := make(chan struct{})
	var releaseOnce sync.Once
	finish := func() { releaseOnce.Do(func() { close(release) }) }
	urls := replicas(t, addr, prefix, 2, func(context.Context, *tlwebhook.SandboxEvent) error {
		runs.Add(1)
		<-release
		return nil
	})
	t.Cleanup(finish) // runs before the servers close, even when the test fails early
	const msgID = "msg_2z0RedisCrash0000000000001"
	assert.Equal(t, http.StatusConflict, post(t, signedRequest(t, urls[0], msgID, body)), "retry within the lease")
	require.Less(t, time.Since(claimedAt), lease, "test too slow to observe the lease")
	assert.Zero(t, runs.Load())

	time.Sleep(time.Until(claimedAt.Add(lease + 100*time.Millisecond)))
	done := make(chan int, 1)
	go func() { done <- post(t, signedRequest(t, urls[1], msgID, body)) }()
	require.Eventually(t, func() bool { return runs.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	// The crashed replica wakes up and releases with its stale token: the
	// running claim must survive it.
	require.NoError(t, crashed.Release(context.Background(), eventID, staleToken))
	assert.Equal(t, http.StatusConflict, post(t, signedRequest(t, urls[0], msgID, body)), "copy during the new run")
	finish()
	assert.Equal(t, http.StatusNoContent, <-done, "retry after the lease")
	assert.Equal(t, int32(1), runs.Load())
}

// TestHandlerRedisDown: with Redis unreachable, a verified delivery gets 503
// and its callback never runs.
func TestHandlerRedisDown(t *testing.T) {
	body, _ := fixture(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := l.Addr().String()
	require.NoError(t, l.Close())
	down := redis.NewClient(&redis.Options{Addr: closedAddr, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = down.Close() })

	h, err := tlwebhook.NewHandler(testSecret,
		tlwebhook.WithDeduplicator(redisdedup.New(down)),
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
	body, _ := fixture(t)
	tests := []struct {
		name string
		opts []tlwebhook.Option
	}{
		{"default callback timeout", nil},
		{"no callback timeout", []tlwebhook.Option{tlwebhook.WithCallbackTimeout(0)}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := redis.NewClient(&redis.Options{Addr: addr, ConnMaxIdleTime: time.Millisecond})
			t.Cleanup(func() { _ = c.Close() })
			opts := append([]tlwebhook.Option{
				tlwebhook.WithDeduplicator(redisdedup.New(c, redisdedup.WithPrefix(testPrefix(t, c)))),
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
			var status int
			require.Eventually(t, func() bool {
				status = post(t, signedRequest(t, srv.URL, msgID, body))
				return status != http.StatusConflict
			}, 3*time.Second, 20*time.Millisecond, "the claim of the finished callback is never settled")
			assert.Equal(t, http.StatusNoContent, status)
			assert.Equal(t, int32(1), runs.Load(), "callback runs")
		})
	}
}
