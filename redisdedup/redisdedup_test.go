package redisdedup_test

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/redisdedup"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// TestDeduplicatorSuite runs the conformance suite against Redis in real
// time: each scenario under a prefix of its own, each Deduplicator it opens
// with a client of its own, connected before it is used, as a separate
// process would have.
func TestDeduplicatorSuite(t *testing.T) {
	addr := redisAddr(t)
	tlwebhooktest.TestDeduplicator(t, tlwebhooktest.DeduplicatorSuite{
		New: func(t *testing.T, lease, retention time.Duration) func() tlwebhook.Deduplicator {
			prefix := testPrefix(t, newClient(t, addr))
			return func() tlwebhook.Deduplicator {
				c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1})
				t.Cleanup(func() { _ = c.Close() })
				require.NoError(t, c.Ping(context.Background()).Err())
				return redisdedup.New(c, redisdedup.WithPrefix(prefix),
					redisdedup.WithLease(lease), redisdedup.WithRetention(retention))
			}
		},
	})
}

// TestRecords checks what is stored in Redis, under which key and for how
// long, by reading it with plain commands.
func TestRecords(t *testing.T) {
	addr := redisAddr(t)
	c := newClient(t, addr)
	ctx := context.Background()
	const (
		lease     = 7 * time.Second
		retention = 3 * time.Hour
		key       = "evt_019f95fb-7f33-7000-8000-000000000001"
	)

	tests := []struct {
		name   string
		prefix func(t *testing.T) string // nil: the default prefix
	}{
		{"custom prefix", func(t *testing.T) string { return testPrefix(t, c) + "custom:" }},
		{"default prefix", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []redisdedup.Option{redisdedup.WithLease(lease), redisdedup.WithRetention(retention)}
			prefix := redisdedup.DefaultPrefix
			k := key
			if tt.prefix != nil {
				prefix = tt.prefix(t)
				opts = append(opts, redisdedup.WithPrefix(prefix))
			} else {
				// Use a key of its own under the default prefix.
				k = key + ":" + strconv.FormatInt(time.Now().UnixNano(), 36)
				t.Cleanup(func() { c.Del(context.Background(), redisdedup.DefaultPrefix+k) })
			}
			d := redisdedup.New(c, opts...)
			rkey := prefix + k

			token, res, err := d.Claim(ctx, k)
			require.NoError(t, err)
			require.Equal(t, tlwebhook.ClaimAcquired, res)
			assert.Regexp(t, `^[0-9a-f]{32}$`, token, "32 hex digits: 16 random bytes")
			assert.Equal(t, "claim:"+token, c.Get(ctx, rkey).Val())
			ttl := c.PTTL(ctx, rkey).Val()
			assert.InDelta(t, lease.Milliseconds(), ttl.Milliseconds(), 1000, "lease as expiry")

			require.NoError(t, d.Complete(ctx, k, token))
			assert.Equal(t, "done", c.Get(ctx, rkey).Val())
			ttl = c.PTTL(ctx, rkey).Val()
			assert.InDelta(t, retention.Milliseconds(), ttl.Milliseconds(), 1000, "retention as expiry")

			require.NoError(t, c.Del(ctx, rkey).Err())
			token, _, err = d.Claim(ctx, k)
			require.NoError(t, err)
			require.NoError(t, d.Release(ctx, k, token))
			assert.Equal(t, int64(0), c.Exists(ctx, rkey).Val(), "released key deleted")
		})
	}
}

func TestPrefixSeparates(t *testing.T) {
	addr := redisAddr(t)
	c := newClient(t, addr)
	base := testPrefix(t, c)
	ctx := context.Background()
	a := redisdedup.New(c, redisdedup.WithPrefix(base+"a:"))
	a2 := redisdedup.New(newClient(t, addr), redisdedup.WithPrefix(base+"a:"))
	b := redisdedup.New(c, redisdedup.WithPrefix(base+"b:"))

	_, res, err := a.Claim(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, tlwebhook.ClaimAcquired, res)

	tests := []struct {
		name string
		d    *redisdedup.Deduplicator
		want tlwebhook.ClaimResult
	}{
		{"same prefix, other client: sees the claim", a2, tlwebhook.ClaimInProgress},
		{"other prefix: independent", b, tlwebhook.ClaimAcquired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, res, err := tt.d.Claim(ctx, "k")
			require.NoError(t, err)
			assert.Equal(t, tt.want, res)
		})
	}
}

// TestForeignValue: a key under the prefix that this package did not write
// is an error, never a claim.
func TestForeignValue(t *testing.T) {
	addr := redisAddr(t)
	c := newClient(t, addr)
	prefix := testPrefix(t, c)
	d := redisdedup.New(c, redisdedup.WithPrefix(prefix))
	ctx := context.Background()

	tests := []struct {
		name    string
		set     func(key string) error
		wantErr error // nil: any error
	}{
		{"other string", func(key string) error { return c.Set(ctx, key, "something else", 0).Err() }, redisdedup.ErrUnexpectedValue},
		{"other type", func(key string) error { return c.HSet(ctx, key, "f", "v").Err() }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "foreign-" + tt.name
			require.NoError(t, tt.set(prefix+key))
			token, res, err := d.Claim(ctx, key)
			require.Error(t, err)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
			}
			assert.Contains(t, err.Error(), "redisdedup")
			assert.Empty(t, token)
			assert.Zero(t, res)
		})
	}
}

// TestRedisDown: when Redis cannot be reached, every method fails, wrapping
// the cause, and nothing is claimed.
func TestRedisDown(t *testing.T) {
	d := redisdedup.New(downClient(t))

	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name string
		ctx  context.Context
		is   error
	}{
		{"connection refused", context.Background(), syscall.ECONNREFUSED},
		{"context canceled", canceled, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, res, err := d.Claim(tt.ctx, "k")
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.is)
			assert.Contains(t, err.Error(), "redisdedup: claim")
			assert.Empty(t, token)
			assert.Zero(t, res)

			err = d.Complete(tt.ctx, "k", "00000000000000000000000000000000")
			assert.ErrorIs(t, err, tt.is)
			assert.Contains(t, err.Error(), "redisdedup: complete")

			err = d.Release(tt.ctx, "k", "00000000000000000000000000000000")
			assert.ErrorIs(t, err, tt.is)
			assert.Contains(t, err.Error(), "redisdedup: release")
		})
	}
}

func TestOptionsRejectInvalidValues(t *testing.T) {
	tests := []struct {
		name string
		f    func()
		msg  string
	}{
		{"zero lease", func() { redisdedup.WithLease(0) }, "redisdedup: WithLease(0s)"},
		{"negative lease", func() { redisdedup.WithLease(-time.Second) }, "redisdedup: WithLease(-1s)"},
		{"zero retention", func() { redisdedup.WithRetention(0) }, "redisdedup: WithRetention(0s)"},
		{"nil client", func() { redisdedup.New(nil) }, "redisdedup: New(nil)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				p := recover()
				require.NotNil(t, p, "no panic")
				assert.Contains(t, p, tt.msg)
			}()
			tt.f()
		})
	}
}

// TestLeaseRoundsUp: a lease under a millisecond still claims (Redis
// refuses PX 0), and expires.
func TestLeaseRoundsUp(t *testing.T) {
	addr := redisAddr(t)
	c := newClient(t, addr)
	d := redisdedup.New(c, redisdedup.WithPrefix(testPrefix(t, c)), redisdedup.WithLease(time.Microsecond))
	ctx := context.Background()
	_, res, err := d.Claim(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, tlwebhook.ClaimAcquired, res)
	require.Eventually(t, func() bool {
		_, res, err := d.Claim(ctx, "k")
		return err == nil && res == tlwebhook.ClaimAcquired
	}, time.Second, 5*time.Millisecond)
}

func BenchmarkRedisClaimComplete(b *testing.B) {
	addr := redisAddr(b)
	c := newClient(b, addr)
	d := redisdedup.New(c, redisdedup.WithPrefix(testPrefix(b, c)), redisdedup.WithRetention(time.Minute))
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key := "evt_019f95fb-7f33-7000-8000-" + strconv.Itoa(i)
		i++
		token, res, err := d.Claim(ctx, key)
		if err != nil || res != tlwebhook.ClaimAcquired {
			b.Fatalf("claim %q: %v, %v", key, res, err)
		}
		if err := d.Complete(ctx, key, token); err != nil {
			b.Fatal(err)
		}
	}
}
