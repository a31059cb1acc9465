package redisdedup_test

import (
	"context"
	"net"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/redisdedup"
)

// step is one operation of a scenario run against a Deduplicator.
type step struct {
	op    string // "claim", "complete", "release" or "sleep"
	key   string
	token string        // claim: name to store the token under; complete, release: name of the token to use
	d     time.Duration // sleep
	want  tlwebhook.ClaimResult
}

var tokenPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestClaimCompleteRelease(t *testing.T) {
	addr := redisAddr(t)
	claim := func(key, name string, want tlwebhook.ClaimResult) step {
		return step{op: "claim", key: key, token: name, want: want}
	}
	complete := func(key, name string) step { return step{op: "complete", key: key, token: name} }
	release := func(key, name string) step { return step{op: "release", key: key, token: name} }
	sleep := func(d time.Duration) step { return step{op: "sleep", d: d} }
	const (
		claimed    = tlwebhook.Claimed
		inProgress = tlwebhook.InProgress
		completed  = tlwebhook.Completed
		// Short periods for the scenarios that wait for them to pass;
		// the others use periods they never reach.
		short = 200 * time.Millisecond
		long  = time.Minute
		past  = short + 100*time.Millisecond
	)

	tests := []struct {
		name             string
		lease, retention time.Duration
		steps            []step
	}{
		{"first claim claims", long, long, []step{
			claim("k", "t1", claimed),
		}},
		{"keys are independent", long, long, []step{
			claim("a", "t1", claimed), claim("b", "t2", claimed), claim("a", "", inProgress),
		}},
		{"duplicate while in progress", long, long, []step{
			claim("k", "t1", claimed), claim("k", "", inProgress), claim("k", "", inProgress),
		}},
		{"completed until retention passes, then claimable", long, short, []step{
			claim("k", "t1", claimed), complete("k", "t1"), claim("k", "", completed), claim("k", "", completed),
			sleep(past), claim("k", "t2", claimed), claim("k", "", inProgress),
		}},
		{"release lets the retry claim", long, long, []step{
			claim("k", "t1", claimed), release("k", "t1"), claim("k", "t2", claimed), claim("k", "", inProgress),
		}},
		{"crash: claim without completion is claimable after the lease", short, long, []step{
			claim("k", "t1", claimed), claim("k", "", inProgress),
			sleep(past), claim("k", "t2", claimed), claim("k", "", inProgress),
		}},
		{"release with a stale token does nothing", short, long, []step{
			claim("k", "t1", claimed), sleep(past), claim("k", "t2", claimed),
			release("k", "t1"), claim("k", "", inProgress),
		}},
		{"complete with a stale token does nothing", short, long, []step{
			claim("k", "t1", claimed), sleep(past), claim("k", "t2", claimed),
			complete("k", "t1"), claim("k", "", inProgress),
			sleep(past), claim("k", "t3", claimed),
		}},
		{"the current holder still completes after a stale release", short, long, []step{
			claim("k", "t1", claimed), sleep(past), claim("k", "t2", claimed),
			release("k", "t1"), complete("k", "t2"), claim("k", "", completed),
		}},
		{"complete after the lease passed does nothing", short, long, []step{
			claim("k", "t1", claimed), sleep(past), complete("k", "t1"), claim("k", "t2", claimed),
		}},
		{"unknown token does nothing", long, long, []step{
			claim("k", "t1", claimed), release("k", "never-issued"), complete("k", "never-issued"),
			release("k", "empty"), complete("k", "empty"), claim("k", "", inProgress),
		}},
		{"token of another key does nothing", long, long, []step{
			claim("a", "ta", claimed), claim("b", "tb", claimed),
			complete("a", "tb"), release("a", "tb"), claim("a", "", inProgress),
		}},
		{"release after complete does nothing", long, long, []step{
			claim("k", "t1", claimed), complete("k", "t1"), release("k", "t1"), claim("k", "", completed),
		}},
		{"complete and release of an unknown key do nothing", long, long, []step{
			complete("k", "never-issued"), release("k", "never-issued"), claim("k", "t1", claimed),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, addr)
			d := redisdedup.New(c, redisdedup.WithPrefix(testPrefix(t, c)),
				redisdedup.WithLease(tt.lease), redisdedup.WithRetention(tt.retention))
			ctx := context.Background()
			tokens := map[string]string{"never-issued": "00000000000000000000000000000000", "empty": ""}
			issued := map[string]bool{}
			for i, s := range tt.steps {
				switch s.op {
				case "claim":
					token, res, err := d.Claim(ctx, s.key)
					require.NoError(t, err, "step %d", i)
					require.Equal(t, s.want, res, "step %d: claim %q", i, s.key)
					if res != tlwebhook.Claimed {
						assert.Empty(t, token, "step %d: token without a claim", i)
						continue
					}
					require.Regexp(t, tokenPattern, token, "step %d", i)
					require.False(t, issued[token], "step %d: token issued twice", i)
					issued[token] = true
					tokens[s.token] = token
				case "complete":
					require.Contains(t, tokens, s.token, "step %d", i)
					require.NoError(t, d.Complete(ctx, s.key, tokens[s.token]), "step %d", i)
				case "release":
					require.Contains(t, tokens, s.token, "step %d", i)
					require.NoError(t, d.Release(ctx, s.key, tokens[s.token]), "step %d", i)
				case "sleep":
					time.Sleep(s.d)
				default:
					t.Fatalf("step %d: unknown op %q", i, s.op)
				}
			}
		})
	}
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
			require.Equal(t, tlwebhook.Claimed, res)
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
	require.Equal(t, tlwebhook.Claimed, res)

	tests := []struct {
		name string
		d    *redisdedup.Deduplicator
		want tlwebhook.ClaimResult
	}{
		{"same prefix, other client: sees the claim", a2, tlwebhook.InProgress},
		{"other prefix: independent", b, tlwebhook.Claimed},
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
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := l.Addr().String()
	require.NoError(t, l.Close())

	down := redis.NewClient(&redis.Options{Addr: closedAddr, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = down.Close() })
	d := redisdedup.New(down)

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

// TestConcurrentClaim: 50 goroutines, each with its own client (its own
// connection, as separate processes would have), claim one key at once;
// exactly one wins.
func TestConcurrentClaim(t *testing.T) {
	addr := redisAddr(t)
	const (
		goroutines = 50
		rounds     = 5
	)
	admin := newClient(t, addr)
	prefix := testPrefix(t, admin)
	ds := make([]*redisdedup.Deduplicator, goroutines)
	for i := range ds {
		c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1})
		t.Cleanup(func() { _ = c.Close() })
		require.NoError(t, c.Ping(context.Background()).Err()) // connect before the race
		ds[i] = redisdedup.New(c, redisdedup.WithPrefix(prefix))
	}
	for round := range rounds {
		key := "evt_" + strconv.Itoa(round)
		var (
			start   = make(chan struct{})
			wg      sync.WaitGroup
			results [goroutines]tlwebhook.ClaimResult
			tokens  [goroutines]string
		)
		for g := range goroutines {
			wg.Go(func() {
				<-start
				var err error
				tokens[g], results[g], err = ds[g].Claim(context.Background(), key)
				assert.NoError(t, err)
			})
		}
		close(start)
		wg.Wait()

		count := map[tlwebhook.ClaimResult]int{}
		winner := -1
		for g, r := range results {
			count[r]++
			if r == tlwebhook.Claimed {
				winner = g
			}
		}
		require.Equal(t, map[tlwebhook.ClaimResult]int{tlwebhook.Claimed: 1, tlwebhook.InProgress: goroutines - 1}, count, "round %d", round)
		// Only the winner's token completes.
		for g := range goroutines {
			if g != winner {
				require.NoError(t, ds[g].Complete(context.Background(), key, tokens[winner]+"x"))
			}
		}
		_, res, err := ds[0].Claim(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, tlwebhook.InProgress, res)
		require.NoError(t, ds[(winner+1)%goroutines].Complete(context.Background(), key, tokens[winner]))
		_, res, err = ds[0].Claim(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, tlwebhook.Completed, res)
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
	require.Equal(t, tlwebhook.Claimed, res)
	require.Eventually(t, func() bool {
		_, res, err := d.Claim(ctx, "k")
		return err == nil && res == tlwebhook.Claimed
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
		if err != nil || res != tlwebhook.Claimed {
			b.Fatalf("claim %q: %v, %v", key, res, err)
		}
		if err := d.Complete(ctx, key, token); err != nil {
			b.Fatal(err)
		}
	}
}
