// Package redisdedup is a [tlwebhook.Deduplicator] that keeps its records in
// Redis, so that several processes or replicas receiving copies of the same
// Tensorlake webhook run its callback once between them.
//
// It lives in its own module so that programs using tlwebhook without Redis
// do not depend on github.com/redis/go-redis/v9.
//
// # Usage
//
// Give every replica a [tlwebhook.Handler] built with the same Redis:
//
//	client := redis.NewClient(&redis.Options{Addr: "redis:6379"})
//	h, err := tlwebhook.NewHandler(secret,
//		tlwebhook.WithDeduplicator(redisdedup.New(client)))
//	if err != nil {
//		log.Fatal(err)
//	}
//	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
//		return store(ctx, ev) // runs once per message across all replicas
//	})
//	http.Handle("POST /webhooks/tensorlake", h)
//
// Any [redis.UniversalClient] works: a single-node client, a failover
// (Sentinel) client or a cluster client.
//
// # Records
//
// Each message key (its [tlwebhook.Delivery.IdempotencyKey]) is one Redis
// string under the prefix ([WithPrefix], default [DefaultPrefix]):
//
//   - "claim:<token>" with the lease as its expiry ([WithLease], default
//     [tlwebhook.DefaultDedupLease]) while a delivery is processed;
//   - "done" with the retention as its expiry ([WithRetention], default
//     [tlwebhook.DefaultDedupRetention]) once it succeeded.
//
// Claiming is SET NX PX; a key that is already set is read in the same Lua
// script to tell a live claim from a completion, so a claim is one atomic
// round trip. Complete and Release are Lua scripts that act only when the
// key still holds the caller's claim token, so a process whose lease ran out
// never completes or releases a later claim. Redis expires abandoned claims
// by itself, so a crashed process delays a retry by at most the lease.
//
// Every script reads and writes a single key, named in KEYS, so it runs on
// the node that owns that key's slot: the deduplicator works unchanged on
// Redis Cluster and needs no hash tags.
//
// # Errors
//
// Every method returns Redis errors (connection refused, timeouts, a
// canceled context) wrapped, never hides them: a Handler then answers 503,
// Svix retries later and nothing runs without a claim. Retries are the
// client's business ([redis.Options.MaxRetries], and DialerRetries, which
// by default spends about half a second redialling an unreachable server);
// keep the client's timeouts and retries well under the 15 seconds Svix
// waits for an answer.
package redisdedup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tlwebhook/tlwebhook"
)

// DefaultPrefix is the default prefix of the Redis keys.
const DefaultPrefix = "tlwebhook:dedup:"

// claimPrefix starts the value of a claimed key; the Lua scripts below
// spell it, and the completed value "done", out.
const claimPrefix = "claim:"

// ErrUnexpectedValue is wrapped by the error Claim returns when a key under
// the prefix holds a value this package did not write, for example because
// another program uses the same prefix. Nothing runs: choose a distinct
// prefix ([WithPrefix]).
var ErrUnexpectedValue = errors.New("redisdedup: unexpected value at key")

// Script results of claimScript.
const (
	replyUnexpected = 0
	replyClaimed    = 1
	replyInProgress = 2
	replyCompleted  = 3
)

// claimScript claims KEYS[1] with the value ARGV[1] for ARGV[2]
// milliseconds, or reports why it cannot: 1 claimed, 2 in progress, 3
// completed, 0 a value this package does not write.
var claimScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	return 1
end
local v = redis.call('GET', KEYS[1])
if v == 'done' then
	return 3
end
if type(v) == 'string' and string.sub(v, 1, 6) == 'claim:' then
	return 2
end
return 0
`)

// completeScript marks KEYS[1] done for ARGV[2] milliseconds if it holds
// the claim ARGV[1].
var completeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
	return 1
end
return 0
`)

// releaseScript deletes KEYS[1] if it holds the claim ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// A Deduplicator is a [tlwebhook.Deduplicator] backed by Redis. It is safe
// for concurrent use, and any number of Deduplicators in any number of
// processes may share one Redis. Create one with [New].
type Deduplicator struct {
	client    redis.UniversalClient
	prefix    string
	lease     time.Duration
	retention time.Duration
}

var _ tlwebhook.Deduplicator = (*Deduplicator)(nil)

// An Option configures a [Deduplicator].
type Option func(*Deduplicator)

// WithPrefix sets the prefix of the Redis keys; the default is
// [DefaultPrefix]. Deduplicators that should recognise each other's
// deliveries must use the same prefix; separate applications sharing a
// Redis should use different ones.
func WithPrefix(prefix string) Option {
	return func(d *Deduplicator) { d.prefix = prefix }
}

// WithLease sets how long a claim lasts when it is neither completed nor
// released, for example because the process crashed; the default is
// [tlwebhook.DefaultDedupLease]. It should be longer than the Handler's
// callback timeout ([tlwebhook.WithCallbackTimeout]). Redis keeps
// milliseconds: a lease that is not a whole number of them is rounded up.
// WithLease panics if lease is not positive.
func WithLease(lease time.Duration) Option {
	if lease <= 0 {
		panic(fmt.Sprintf("redisdedup: WithLease(%v): lease must be positive", lease))
	}
	return func(d *Deduplicator) { d.lease = lease }
}

// WithRetention sets how long a completed message is remembered; the
// default is [tlwebhook.DefaultDedupRetention], longer than Svix's retry
// schedule. It is rounded up to milliseconds. WithRetention panics if
// retention is not positive.
func WithRetention(retention time.Duration) Option {
	if retention <= 0 {
		panic(fmt.Sprintf("redisdedup: WithRetention(%v): retention must be positive", retention))
	}
	return func(d *Deduplicator) { d.retention = retention }
}

// New returns a [Deduplicator] that keeps its records in client. It sends
// nothing to Redis until used.
func New(client redis.UniversalClient, opts ...Option) *Deduplicator {
	if client == nil {
		panic("redisdedup: New(nil)")
	}
	d := &Deduplicator{
		client:    client,
		prefix:    DefaultPrefix,
		lease:     tlwebhook.DefaultDedupLease,
		retention: tlwebhook.DefaultDedupRetention,
	}
	for _, opt := range opts {
		if opt != nil {
			opt(d)
		}
	}
	return d
}

// Claim tries to claim key for the lease period; see
// [tlwebhook.Deduplicator]. It returns an error when Redis cannot be
// reached or answers with an error.
func (d *Deduplicator) Claim(ctx context.Context, key string) (string, tlwebhook.ClaimResult, error) {
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // never fails; see crypto/rand.Read
	token := hex.EncodeToString(raw[:])

	reply, err := claimScript.Run(ctx, d.client, []string{d.prefix + key},
		claimPrefix+token, millis(d.lease)).Int64()
	if err != nil {
		return "", 0, fmt.Errorf("redisdedup: claim: %w", err)
	}
	switch reply {
	case replyUnexpected:
		return "", 0, fmt.Errorf("%w %q", ErrUnexpectedValue, d.prefix+key)
	case replyClaimed:
		return token, tlwebhook.ClaimAcquired, nil
	case replyInProgress:
		return "", tlwebhook.ClaimInProgress, nil
	case replyCompleted:
		return "", tlwebhook.ClaimDone, nil
	}
	return "", 0, fmt.Errorf("redisdedup: claim: unexpected script reply %d", reply)
}

// Complete marks key as processed for the retention period, if token still
// holds the claim on it; otherwise it does nothing. It returns an error when
// Redis cannot be reached or answers with an error.
func (d *Deduplicator) Complete(ctx context.Context, key, token string) error {
	if token == "" {
		return nil
	}
	err := completeScript.Run(ctx, d.client, []string{d.prefix + key},
		claimPrefix+token, millis(d.retention)).Err()
	if err != nil {
		return fmt.Errorf("redisdedup: complete: %w", err)
	}
	return nil
}

// Release deletes the claim on key, if token still holds it; otherwise it
// does nothing. It returns an error when Redis cannot be reached or answers
// with an error.
func (d *Deduplicator) Release(ctx context.Context, key, token string) error {
	if token == "" {
		return nil
	}
	err := releaseScript.Run(ctx, d.client, []string{d.prefix + key}, claimPrefix+token).Err()
	if err != nil {
		return fmt.Errorf("redisdedup: release: %w", err)
	}
	return nil
}

// millis converts d to whole milliseconds, rounding up.
func millis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
