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

// suiteReadTimeout is the read timeout of the clients of the conformance
// suite: its leases are a suitePeriod, which must be at least three read
// timeouts.
const (
	suitePeriod      = 900 * time.Millisecond
	suiteReadTimeout = 300 * time.Millisecond
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
				c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, ReadTimeout: suiteReadTimeout})
				t.Cleanup(func() { _ = c.Close() })
				require.NoError(t, c.Ping(context.Background()).Err())
				return newDedup(t, c, redisdedup.WithPrefix(prefix),
					redisdedup.WithLease(lease), redisdedup.WithRetention(retention))
			}
		},
		Period: suitePeriod,
	})
}

// TestRecords checks what is stored in Redis, under which key and for how
// long, by reading it with plain commands.
func TestRecords(t *testing.T) {
	addr := redisAddr(t)
	c := newClient(t, addr)
	ctx := context.Background()
	const (
		lease     = 20 * time.Second
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
			d := newDedup(t, c, opts...)
			assert.Equal(t, lease, d.Lease())
			rkey := prefix + k

			since := time.Now()
			token, res, err := d.Claim(ctx, k)
			require.NoError(t, err)
			require.Equal(t, tlwebhook.ClaimAcquired, res)
			assert.Regexp(t, `^[0-9a-f]{32}$`, token, "32 hex digits: 16 random bytes")
			assert.Equal(t, "claim:"+token, c.Get(ctx, rkey).Val())
			assertTTL(t, c, rkey, lease, since, "lease as expiry")

			require.NoError(t, c.PExpire(ctx, rkey, time.Second).Err())
			since = time.Now()
			require.NoError(t, d.Renew(ctx, k, token))
			assert.Equal(t, "claim:"+token, c.Get(ctx, rkey).Val(), "renewal keeps the value")
			assertTTL(t, c, rkey, lease, since, "renewal: a full lease again")

			since = time.Now()
			require.NoError(t, d.Complete(ctx, k, token))
			assert.Equal(t, "done:"+token, c.Get(ctx, rkey).Val())
			assertTTL(t, c, rkey, retention, since, "retention as expiry")

			require.NoError(t, c.Del(ctx, rkey).Err())
			token, _, err = d.Claim(ctx, k)
			require.NoError(t, err)
			since = time.Now()
			require.NoError(t, d.Release(ctx, k, token))
			assert.Equal(t, "free:"+token, c.Get(ctx, rkey).Val(), "released key: a marker for resent releases")
			assertTTL(t, c, rkey, lease, since, "the marker lasts a lease")
			token2, res, err := d.Claim(ctx, k)
			require.NoError(t, err)
			assert.Equal(t, tlwebhook.ClaimAcquired, res, "a released key is free")
			assert.Equal(t, "claim:"+token2, c.Get(ctx, rkey).Val())
		})
	}
}

// assertTTL checks that key expires want after an operation started at
// since and done before now: its time to live is at most want, and at
// least want less the time that has passed since (and a millisecond, which
// Redis rounds to).
func assertTTL(t *testing.T, c *redis.Client, key string, want time.Duration, since time.Time, msg string) {
	t.Helper()
	ttl := c.PTTL(context.Background(), key).Val()
	elapsed := time.Since(since)
	assert.LessOrEqual(t, ttl, want, msg)
	assert.GreaterOrEqual(t, ttl, want-elapsed-time.Millisecond, "%s (%v since the operation began)", msg, elapsed)
}

// TestLegacyDone: a completion written by an earlier version, a bare
// "done", still counts as done.
func TestLegacyDone(t *testing.T) {
	addr := redisAddr(t)
	c := newClient(t, addr)
	prefix := testPrefix(t, c)
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, prefix+"k", "done", time.Minute).Err())
	d := newDedup(t, c, redisdedup.WithPrefix(prefix))
	token, res, err := d.Claim(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, tlwebhook.ClaimDone, res)
	assert.Empty(t, token)
}

// TestClaimLost: Complete, Release and Renew with a token that no longer
// holds the claim change nothing and return an error wrapping ErrClaimLost
// that says why, whatever the key holds.
func TestClaimLost(t *testing.T) {
	addr := redisAddr(t)
	c := newClient(t, addr)
	prefix := testPrefix(t, c)
	d := newDedup(t, c, redisdedup.WithPrefix(prefix))
	ctx := context.Background()
	const stale = "0123456789abcdef0123456789abcdef"

	tests := []struct {
		name  string
		value string // what the key holds; "": nothing
		why   string
	}{
		{"expired", "", "no record"},
		{"claimed by another", "claim:fedcba9876543210fedcba9876543210", "another holder claimed the key"},
		{"completed", "done:fedcba9876543210fedcba9876543210", "completed"},
		{"completed by an earlier version", "done", "completed"},
		{"released", "free:" + stale, "released"},
		{"released by another", "free:fedcba9876543210fedcba9876543210", "released"},
		{"foreign value", "something else", "does not write"},
	}
	ops := []struct {
		name string
		f    func(ctx context.Context, key, token string) error
	}{
		{"complete", d.Complete},
		{"release", d.Release},
		{"renew", d.Renew},
	}
	for _, tt := range tests {
		for _, op := range ops {
			t.Run(tt.name+"/"+op.name, func(t *testing.T) {
				key := tt.name + "/" + op.name
				if tt.value != "" {
					require.NoError(t, c.Set(ctx, prefix+key, tt.value, time.Minute).Err())
				}
				err := op.f(ctx, key, stale)
				if op.name == "release" && tt.value == "free:"+stale {
					require.NoError(t, err, "a release resent by the client succeeds")
					return
				}
				require.ErrorIs(t, err, tlwebhook.ErrClaimLost)
				assert.Contains(t, err.Error(), "redisdedup: "+op.name)
				assert.Contains(t, err.Error(), tt.why)
				got, err := c.Get(ctx, prefix+key).Result()
				if tt.value == "" {
					assert.ErrorIs(t, err, redis.Nil, "nothing written")
					return
				}
				require.NoError(t, err)
				assert.Equal(t, tt.value, got, "value unchanged")
				ttl := c.PTTL(ctx, prefix+key).Val()
				assert.LessOrEqual(t, ttl, time.Minute, "expiry unchanged")
				assert.Greater(t, ttl, 50*time.Second, "expiry unchanged")
			})
		}
	}

	t.Run("empty token", func(t *testing.T) {
		for _, op := range ops {
			assert.ErrorIs(t, op.f(ctx, "k", ""), tlwebhook.ErrClaimLost, op.name)
		}
	})
}

func TestPrefixSeparates(t *testing.T) {
	addr := redisAddr(t)
	c := newClient(t, addr)
	base := testPrefix(t, c)
	ctx := context.Background()
	a := newDedup(t, c, redisdedup.WithPrefix(base+"a:"))
	a2 := newDedup(t, newClient(t, addr), redisdedup.WithPrefix(base+"a:"))
	b := newDedup(t, c, redisdedup.WithPrefix(base+"b:"))

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
	d := newDedup(t, c, redisdedup.WithPrefix(prefix))
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
	d := newDedup(t, downClient(t))

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
	const token = "00000000000000000000000000000000"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res, err := d.Claim(tt.ctx, "k")
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.is)
			assert.Contains(t, err.Error(), "redisdedup: claim")
			assert.Empty(t, got)
			assert.Zero(t, res)

			for name, f := range map[string]func(context.Context, string, string) error{
				"complete": d.Complete, "release": d.Release, "renew": d.Renew,
			} {
				err = f(tt.ctx, "k", token)
				assert.ErrorIs(t, err, tt.is, name)
				assert.NotErrorIs(t, err, tlwebhook.ErrClaimLost, "%s: unknown, not lost", name)
				assert.Contains(t, err.Error(), "redisdedup: "+name)
			}
		})
	}
}

// TestNewRefusesWhatCannotWork: New refuses options that cannot work, with
// an error wrapping ErrInvalidOption, and accepts the edges.
func TestNewRefusesWhatCannotWork(t *testing.T) {
	client := func(rt time.Duration) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: rt})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = cluster.Close() })
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = ring.Close() })

	tests := []struct {
		name   string
		client redis.UniversalClient
		opts   []redisdedup.Option
		err    string // "": accepted
	}{
		{"defaults", client(0), nil, ""},
		{"nil client", nil, nil, "nil client"},
		{"zero lease", client(0), []redisdedup.Option{redisdedup.WithLease(0)}, "WithLease(0s)"},
		{"negative lease", client(0), []redisdedup.Option{redisdedup.WithLease(-time.Second)}, "WithLease(-1s)"},
		{"lease under MinLease", client(-1), []redisdedup.Option{redisdedup.WithLease(redisdedup.MinLease - time.Millisecond)}, "at least 100ms"},
		{"MinLease, no read timeout", client(-1), []redisdedup.Option{redisdedup.WithLease(redisdedup.MinLease)}, ""},
		{"lease under three default read timeouts", client(0), []redisdedup.Option{redisdedup.WithLease(14 * time.Second)}, "three read timeouts of the client (5s each)"},
		{"lease of three read timeouts", client(time.Second), []redisdedup.Option{redisdedup.WithLease(3 * time.Second)}, ""},
		{"cluster client: lease under three read timeouts", cluster, []redisdedup.Option{redisdedup.WithLease(2 * time.Second)}, "three read timeouts"},
		{"ring: lease under three read timeouts", ring, []redisdedup.Option{redisdedup.WithLease(2 * time.Second)}, "three read timeouts"},
		{"cluster client: lease of three read timeouts", cluster, []redisdedup.Option{redisdedup.WithLease(3 * time.Second)}, ""},
		{"zero retention", client(0), []redisdedup.Option{redisdedup.WithRetention(0)}, "WithRetention(0s)"},
		{"retention shorter than the lease", client(0), []redisdedup.Option{redisdedup.WithRetention(time.Second)}, ""},
		{"nil option", client(0), []redisdedup.Option{nil}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := redisdedup.New(tt.client, tt.opts...)
			if tt.err == "" {
				require.NoError(t, err)
				require.NotNil(t, d)
				return
			}
			require.ErrorIs(t, err, tlwebhook.ErrInvalidOption)
			assert.Contains(t, err.Error(), tt.err)
			assert.Nil(t, d)
		})
	}
}

// TestLeaseMilliseconds: the lease reaches Redis as milliseconds, a
// fraction of one rounded up.
func TestLeaseMilliseconds(t *testing.T) {
	addr := redisAddr(t)
	c := newClient(t, addr)
	prefix := testPrefix(t, c)
	ctx := context.Background()
	lease := 15*time.Second + 300*time.Microsecond
	d := newDedup(t, c, redisdedup.WithPrefix(prefix), redisdedup.WithLease(lease), redisdedup.WithRetention(lease))
	since := time.Now()
	_, res, err := d.Claim(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, tlwebhook.ClaimAcquired, res)
	assertTTL(t, c, prefix+"k", 15001*time.Millisecond, since, "the lease in whole milliseconds, rounded up")
}

func BenchmarkRedisClaimComplete(b *testing.B) {
	addr := redisAddr(b)
	c := newClient(b, addr)
	d := newDedup(b, c, redisdedup.WithPrefix(testPrefix(b, c)), redisdedup.WithRetention(time.Minute))
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
