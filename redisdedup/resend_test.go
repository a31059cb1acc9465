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

// lateReplyProxy is a TCP proxy in front of Redis that, once armed, holds
// back the reply to the next script call (EVALSHA): Redis runs the script
// at once, but the client gets no answer, times out, drops the connection
// and resends the call on another one, which the proxy leaves alone. That
// is what a slow network or a stalled proxy does to a client; toxiproxy's
// latency toxic cannot pick out one reply on one connection, so this test
// has its own proxy.
//
// The held reply is not released after a fixed delay, which a loaded
// machine could outlast (a client whose timer fires late reads the late
// reply and never resends), but once the client has resent the call or
// closed the connection, or after holdMax. The resend is forwarded only
// after the first run's reply reached the proxy and onFirstRun returned,
// so that a test can look at what the first run left behind.
type lateReplyProxy struct {
	l        net.Listener
	upstream string
	armed    atomic.Bool  // the next EVALSHA's reply is held back
	delayed  atomic.Int32 // replies held back
	evals    atomic.Int32 // EVALSHA calls seen
	wg       sync.WaitGroup

	mu   sync.Mutex
	hold *heldReply // of the armed call, until the call is resent
	// onFirstRun, if set, is called with the first run's reply in hand,
	// before the resend is let through.
	onFirstRun func()
}

// heldReply is the state of one held-back reply.
type heldReply struct {
	firstRan chan struct{} // closed once the first run's reply arrived and onFirstRun returned
	resent   chan struct{} // closed when the call is seen again
	once     sync.Once
}

// holdMax bounds how long a reply is held back should the client neither
// resend nor hang up; the tests fail then, as they should.
const holdMax = time.Minute

func newLateReplyProxy(t *testing.T, upstream string) *lateReplyProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &lateReplyProxy{l: l, upstream: upstream}
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

// evalSeen counts an EVALSHA on a connection. It returns the hold that
// this call starts (the proxy was armed), or nil; a call that resends a
// held one waits until the first run's reply arrived.
func (p *lateReplyProxy) evalSeen() *heldReply {
	p.evals.Add(1)
	p.mu.Lock()
	if p.armed.CompareAndSwap(true, false) {
		p.hold = &heldReply{firstRan: make(chan struct{}), resent: make(chan struct{})}
		h := p.hold
		p.mu.Unlock()
		return h
	}
	h := p.hold
	p.hold = nil
	p.mu.Unlock()
	if h != nil {
		select {
		case <-h.firstRan:
		case <-time.After(holdMax):
		}
		close(h.resent)
	}
	return nil
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
	var held atomic.Pointer[heldReply] // the reply to hold on this connection
	hungUp := make(chan struct{})      // the client closed the connection
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(hungUp)
		defer up.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := down.Read(buf)
			if n > 0 {
				if bytes.Contains(bytes.ToLower(buf[:n]), []byte("evalsha")) {
					if h := p.evalSeen(); h != nil {
						held.Store(h)
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
				if h := held.Swap(nil); h != nil {
					p.delayed.Add(1)
					h.once.Do(func() {
						if p.onFirstRun != nil {
							p.onFirstRun()
						}
						close(h.firstRan)
					})
					select {
					case <-h.resent:
					case <-hungUp:
					case <-time.After(holdMax):
					}
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
	// The held reply always outlasts the read timeout; every other reply
	// must come within it, on a loaded machine too. The lease is the
	// shortest that New accepts with it.
	const (
		readTimeout = 500 * time.Millisecond
		lease       = 3 * readTimeout
	)
	proxy := newLateReplyProxy(t, addr)
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
	d := newDedup(t, c, redisdedup.WithPrefix(prefix), redisdedup.WithLease(lease))
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

	// resent runs f with the next script reply held back, and checks
	// that the client resent the script: without a resend the test
	// proves nothing. firstRun, if not nil, runs once Redis has run the
	// script the first time, before the resend reaches it.
	resent := func(t *testing.T, f, firstRun func()) {
		t.Helper()
		evals, delayed := proxy.evals.Load(), proxy.delayed.Load()
		proxy.onFirstRun = firstRun
		proxy.armed.Store(true)
		f()
		proxy.armed.Store(false)
		require.Equal(t, delayed+1, proxy.delayed.Load(), "one reply delayed")
		require.GreaterOrEqual(t, proxy.evals.Load(), evals+2, "the script was sent again")
	}
	value := func(key string) string { return direct.Get(ctx, prefix+key).Val() }
	expiry := func(key string) time.Duration { return direct.PExpireTime(ctx, prefix+key).Val() }

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
			first := make(chan time.Duration, 1) // when the first run's lease ends
			resent(t, func() { token, res, err = d.Claim(ctx, key) }, func() {
				first <- expiry(key)
				// Redis counts milliseconds: the resend runs at
				// least this much later than the first run.
				time.Sleep(5 * time.Millisecond)
			})
			require.NoError(t, err)
			assert.Equal(t, tlwebhook.ClaimAcquired, res, "a resent claim found its own claim")
			assert.Equal(t, "claim:"+token, value(key))
			// The lease counts from the answer, not from the first run,
			// which was a read timeout and a backoff earlier.
			assert.Greater(t, expiry(key), <-first, "a resent claim renews its lease")
			require.NoError(t, d.Complete(ctx, key, token), "the token holds the claim")
		}},
		{"complete", func(t *testing.T, key string) {
			token, _, err := d.Claim(ctx, key)
			require.NoError(t, err)
			resent(t, func() { err = d.Complete(ctx, key, token) }, nil)
			require.NoError(t, err, "a resent complete found its own completion")
			assert.Equal(t, "done:"+token, value(key))
		}},
		{"release", func(t *testing.T, key string) {
			token, _, err := d.Claim(ctx, key)
			require.NoError(t, err)
			resent(t, func() { err = d.Release(ctx, key, token) }, nil)
			require.NoError(t, err, "a resent release found its own release")
			_, res, err := d.Claim(ctx, key)
			require.NoError(t, err)
			assert.Equal(t, tlwebhook.ClaimAcquired, res, "released")
		}},
		{"renew", func(t *testing.T, key string) {
			token, _, err := d.Claim(ctx, key)
			require.NoError(t, err)
			resent(t, func() { err = d.Renew(ctx, key, token) }, nil)
			require.NoError(t, err)
			assert.Equal(t, "claim:"+token, value(key))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, tt.name) })
	}
}

// TestLateReplyProxy: the proxy of TestResentRequests holds back exactly
// one reply when armed, and passes everything else through.
func TestLateReplyProxy(t *testing.T) {
	addr := redisAddr(t)
	proxy := newLateReplyProxy(t, addr)
	// Every reply but the held one must come within the read timeout.
	c := redis.NewClient(&redis.Options{Addr: proxy.addr(), ReadTimeout: time.Second, MaxRetries: -1})
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
