package redisdedup_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/redisdedup"
)

// lateReplyProxy is a TCP proxy in front of Redis that, once armed, makes
// the reply to the next script call (EVALSHA) arrive late: Redis runs the
// script at once, but the client sees no answer before its read timeout,
// drops the connection and resends the call on another one, which the
// proxy leaves alone. That is what a slow network or a stalled proxy does
// to a client; toxiproxy's latency toxic cannot pick out one reply on one
// connection, so this test has its own proxy.
type lateReplyProxy struct {
	l        net.Listener
	upstream string
	delay    time.Duration
	armed    atomic.Bool  // the next EVALSHA's reply is delayed
	delayed  atomic.Int32 // replies delayed
	evals    atomic.Int32 // EVALSHA calls seen
	wg       sync.WaitGroup
}

func newLateReplyProxy(t *testing.T, upstream string, delay time.Duration) *lateReplyProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &lateReplyProxy{l: l, upstream: upstream, delay: delay}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		_ = l.Close()
		p.wg.Wait()
	})
	return p
}

func (p *lateReplyProxy) addr() string { return p.l.Addr().String() }

func (p *lateReplyProxy) serve() {
	for {
		down, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.relay(down) })
	}
}

// relay copies one connection both ways. Only client-to-server chunks are
// inspected; a RESP command from go-redis arrives in one write, and its
// reply cannot be sent before the command has been forwarded.
func (p *lateReplyProxy) relay(down net.Conn) {
	defer down.Close()
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer up.Close()
	var delayReply atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		defer up.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := down.Read(buf)
			if n > 0 {
				if bytes.Contains(bytes.ToLower(buf[:n]), []byte("evalsha")) {
					p.evals.Add(1)
					if p.armed.CompareAndSwap(true, false) {
						delayReply.Store(true)
					}
				}
				if _, err := up.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	wg.Go(func() {
		defer down.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if n > 0 {
				if delayReply.CompareAndSwap(true, false) {
					p.delayed.Add(1)
					time.Sleep(p.delay)
				}
				if _, err := down.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	wg.Wait()
}

// TestResentRequests: Redis runs a script, its reply comes after the
// client's read timeout, and go-redis resends the script. The resend must
// answer as the first run would have: above all, a Claim must not find its
// own claim and answer ClaimInProgress, which would turn the first delivery
// of a message away with 409 and leave it waiting a whole lease.
func TestResentRequests(t *testing.T) {
	addr := redisAddr(t)
	const (
		readTimeout = 100 * time.Millisecond
		delay       = 400 * time.Millisecond // of the first reply: past the read timeout
	)
	proxy := newLateReplyProxy(t, addr, delay)
	c := redis.NewClient(&redis.Options{
		Addr:            proxy.addr(),
		ReadTimeout:     readTimeout,
		MaxRetries:      3,
		MinRetryBackoff: 10 * time.Millisecond,
		MaxRetryBackoff: 20 * time.Millisecond,
	})
	t.Cleanup(func() { _ = c.Close() })
	direct := newClient(t, addr)
	prefix := testPrefix(t, direct)
	d := newDedup(t, c, redisdedup.WithPrefix(prefix), redisdedup.WithLease(time.Second))
	ctx := context.Background()

	// Load every script into Redis's cache, so that the first call of
	// each below is an EVALSHA that Redis runs (not one answered
	// NOSCRIPT, then sent again as EVAL).
	token, _, err := d.Claim(ctx, "warm-up")
	require.NoError(t, err)
	require.NoError(t, d.Renew(ctx, "warm-up", token))
	require.NoError(t, d.Complete(ctx, "warm-up", token))
	token, _, err = d.Claim(ctx, "warm-up-release")
	require.NoError(t, err)
	require.NoError(t, d.Release(ctx, "warm-up-release", token))

	// resent runs f with the next script reply delayed, and checks that
	// the client resent the script: without a resend the test proves
	// nothing.
	resent := func(t *testing.T, f func()) {
		t.Helper()
		evals, delayed := proxy.evals.Load(), proxy.delayed.Load()
		proxy.armed.Store(true)
		f()
		proxy.armed.Store(false)
		require.Equal(t, delayed+1, proxy.delayed.Load(), "one reply delayed")
		require.GreaterOrEqual(t, proxy.evals.Load(), evals+2, "the script was sent again")
	}
	value := func(key string) string { return direct.Get(ctx, prefix+key).Val() }

	tests := []struct {
		name string
		run  func(t *testing.T, key string)
	}{
		{"claim", func(t *testing.T, key string) {
			var (
				token string
				res   tlwebhook.ClaimResult
				err   error
			)
			resent(t, func() { token, res, err = d.Claim(ctx, key) })
			require.NoError(t, err)
			assert.Equal(t, tlwebhook.ClaimAcquired, res, "a resent claim found its own claim")
			assert.Equal(t, "claim:"+token, value(key))
			// The lease counts from the answer, not from the first run,
			// which was a read timeout and a backoff earlier.
			assert.Greater(t, direct.PTTL(ctx, prefix+key).Val(), time.Second-readTimeout/2,
				"a resent claim renews its lease")
			require.NoError(t, d.Complete(ctx, key, token), "the token holds the claim")
		}},
		{"complete", func(t *testing.T, key string) {
			token, _, err := d.Claim(ctx, key)
			require.NoError(t, err)
			resent(t, func() { err = d.Complete(ctx, key, token) })
			require.NoError(t, err, "a resent complete found its own completion")
			assert.Equal(t, "done:"+token, value(key))
		}},
		{"release", func(t *testing.T, key string) {
			token, _, err := d.Claim(ctx, key)
			require.NoError(t, err)
			resent(t, func() { err = d.Release(ctx, key, token) })
			require.NoError(t, err, "a resent release found its own release")
			_, res, err := d.Claim(ctx, key)
			require.NoError(t, err)
			assert.Equal(t, tlwebhook.ClaimAcquired, res, "released")
		}},
		{"renew", func(t *testing.T, key string) {
			token, _, err := d.Claim(ctx, key)
			require.NoError(t, err)
			resent(t, func() { err = d.Renew(ctx, key, token) })
			require.NoError(t, err)
			assert.Equal(t, "claim:"+token, value(key))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, tt.name) })
	}
}

// TestLateReplyProxy: the proxy of TestResentRequests delays exactly one
// reply when armed, and passes everything else through.
func TestLateReplyProxy(t *testing.T) {
	addr := redisAddr(t)
	proxy := newLateReplyProxy(t, addr, 300*time.Millisecond)
	c := redis.NewClient(&redis.Options{Addr: proxy.addr(), ReadTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	script := redis.NewScript(`return 7`)
	require.NoError(t, script.Load(ctx, c).Err())
	got, err := script.Run(ctx, c, nil).Int()
	require.NoError(t, err)
	assert.Equal(t, 7, got)

	proxy.armed.Store(true)
	err = script.Run(ctx, c, nil).Err()
	var netErr net.Error
	require.True(t, errors.As(err, &netErr) && netErr.Timeout() || errors.Is(err, io.EOF), "want a timeout without retries, got %v", err)
	assert.Equal(t, int32(1), proxy.delayed.Load())
	got, err = script.Run(ctx, c, nil).Int()
	require.NoError(t, err)
	assert.Equal(t, 7, got, "later calls pass")
}
