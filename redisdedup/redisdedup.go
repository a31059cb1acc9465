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
//	dedup, err := redisdedup.New(client)
//	if err != nil {
//		log.Fatal(err)
//	}
//	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithDeduplicator(dedup))
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
//     [tlwebhook.DefaultDedupLease]) while a delivery is processed; every
//     renewal ([Deduplicator.Renew]) sets the expiry to a full lease again;
//   - "done:<token>" with the retention as its expiry ([WithRetention],
//     default [tlwebhook.DefaultDedupRetention]) once it succeeded (a bare
//     "done", as earlier versions wrote, means the same);
//   - "free:<token>" for one lease after a release: the key is free to
//     claim, and the value only lets a resent Release recognise its own.
//
// Each operation is one Lua script that reads and writes the key
// atomically, so it is one round trip. Complete, Release and Renew act only
// when the key still holds the caller's claim token, so a process whose
// lease ran out never completes, releases or extends a later claim; they
// return an error wrapping [tlwebhook.ErrClaimLost] instead. Redis expires
// abandoned claims by itself, so a crashed process delays a retry by at
// most the lease.
//
// # Resent commands
//
// go-redis resends a command whose reply did not come in time (a read
// timeout) or whose connection broke, although Redis may have run it
// already. Every script is idempotent for its token, so a resend answers as
// the first run would have: the claim token is made before the script is
// sent, and a Claim that finds the key holding that very token answers
// [tlwebhook.ClaimAcquired], not [tlwebhook.ClaimInProgress]; a Complete
// that finds "done:<token>", or a Release that finds "free:<token>",
// succeeds.
//
// # Redis Cluster
//
// Every script reads and writes a single key, named in KEYS, so it runs on
// the node that owns that key's slot: the deduplicator works unchanged on
// Redis Cluster and needs no hash tags.
//
// # Eviction
//
// A key evicted before its expiry is a claim or a completion forgotten: a
// copy then runs beside the first delivery, or again after it. Every key
// this package writes has an expiry, so the volatile-* maxmemory policies
// may evict them as readily as the allkeys-* ones. Only "noeviction" (the
// default) is safe: a full Redis then refuses the scripts' writes, Claim
// fails, and the Handler answers 503 and runs nothing until there is room.
//
// # Errors
//
// Every method returns Redis errors (connection refused, timeouts, a
// canceled context) wrapped, never hides them: a Handler then answers 503,
// Svix retries later and nothing runs without a claim. Retries are the
// client's business ([redis.Options.MaxRetries], and DialerRetries, which
// by default spends about half a second redialling an unreachable server);
// keep the client's timeouts and retries well under the 15 seconds Svix
// waits for an answer, and under a third of the lease, so that a renewal
// that has to wait for a timeout still arrives in time.
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

// MinLease is the shortest lease [New] accepts. A Handler renews a claim
// every third of the lease; below a tenth of a second, ordinary scheduling
// delays and network round trips would let claims lapse.
const MinLease = 100 * time.Millisecond

// ErrUnexpectedValue is wrapped by the error Claim returns when a key under
// the prefix holds a value this package did not write, for example because
// another program uses the same prefix. Nothing runs: choose a distinct
// prefix ([WithPrefix]).
var ErrUnexpectedValue = errors.New("redisdedup: unexpected value at key")

// Script replies. Claim answers replyClaimed, replyInProgress,
// replyCompleted or replyUnexpected; Complete, Release and Renew answer
// replyOK, or why the token no longer holds the claim: replyGone, or the
// value they found (replyInProgress: another claim; replyCompleted,
// replyReleased, replyUnexpected).
const (
	replyUnexpected = 0
	replyClaimed    = 1
	replyOK         = 1
	replyInProgress = 2
	replyCompleted  = 3
	replyReleased   = 4
	replyGone       = 5
)

// lostReasons says, for each reply of Complete, Release and Renew other
// than replyOK, why the token no longer holds the claim.
var lostReasons = map[int64]string{
	replyGone:       "no record: the lease ran out, or the claim never existed",
	replyInProgress: "the lease ran out and another holder claimed the key",
	replyCompleted:  "the key is completed (by another holder, or by this token already)",
	replyReleased:   "the claim was released",
	replyUnexpected: "the key holds a value this package does not write",
}

// classify is the Lua function that tells, from the value v of a key, the
// reply Claim would give it, without the caller's own claim in mind: 1 free
// (no value or a released claim), 2 claimed, 3 completed, 0 a value this
// package does not write.
const classify = `
local function classify(v)
	if v == false or string.sub(v, 1, 5) == 'free:' then
		return 1
	end
	if v == 'done' or string.sub(v, 1, 5) == 'done:' then
		return 3
	end
	if string.sub(v, 1, 6) == 'claim:' then
		return 2
	end
	return 0
end
`

// claimScript claims KEYS[1] for the token ARGV[1] for ARGV[2]
// milliseconds, or reports why it cannot: 1 claimed, 2 in progress, 3
// completed, 0 a value this package does not write. A key that already
// holds this token's claim is claimed, for a full lease from now: the
// script is being run again for the same Claim, because the client resent
// it after losing the reply, and the caller's lease starts when it gets
// the answer.
var claimScript = redis.NewScript(classify + `
local v = redis.call('GET', KEYS[1])
if v == 'claim:' .. ARGV[1] then
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
	return 1
end
local c = classify(v)
if c == 1 then
	redis.call('SET', KEYS[1], 'claim:' .. ARGV[1], 'PX', ARGV[2])
end
return c
`)

// settleScript is the common head of the scripts that act for the holder
// of a claim: it returns early, with why not, unless KEYS[1] holds the
// claim of the token ARGV[1]. A value that this very operation would have
// left (ARGV[3]: "done:" for Complete, "free:" for Release, "" for none)
// means a resent request, and succeeds.
const settleScript = classify + `
local v = redis.call('GET', KEYS[1])
if v ~= 'claim:' .. ARGV[1] then
	if ARGV[3] ~= '' and v == ARGV[3] .. ARGV[1] then
		return 1
	end
	if v == false then
		return 5
	end
	if string.sub(v, 1, 5) == 'free:' then
		return 4
	end
	return classify(v)
end
`

// completeScript marks KEYS[1] done for ARGV[2] milliseconds if it holds
// the claim of the token ARGV[1].
var completeScript = redis.NewScript(settleScript + `
redis.call('SET', KEYS[1], 'done:' .. ARGV[1], 'PX', ARGV[2])
return 1
`)

// releaseScript frees KEYS[1] if it holds the claim of the token ARGV[1],
// leaving "free:<token>" for ARGV[2] milliseconds.
var releaseScript = redis.NewScript(settleScript + `
redis.call('SET', KEYS[1], 'free:' .. ARGV[1], 'PX', ARGV[2])
return 1
`)

// renewScript sets the expiry of KEYS[1] to ARGV[2] milliseconds if it
// holds the claim of the token ARGV[1].
var renewScript = redis.NewScript(settleScript + `
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// A Deduplicator is a [tlwebhook.Deduplicator] backed by Redis, and a
// [tlwebhook.LeaseRenewer]. It is safe for concurrent use, and any number
// of Deduplicators in any number of processes may share one Redis. Create
// one with [New].
type Deduplicator struct {
	client    redis.UniversalClient
	prefix    string
	lease     time.Duration
	retention time.Duration
}

var (
	_ tlwebhook.Deduplicator = (*Deduplicator)(nil)
	_ tlwebhook.LeaseRenewer = (*Deduplicator)(nil)
)

// An Option configures a [Deduplicator]. [New] checks the values.
type Option func(*Deduplicator)

// WithPrefix sets the prefix of the Redis keys; the default is
// [DefaultPrefix]. Deduplicators that should recognise each other's
// deliveries must use the same prefix; separate applications sharing a
// Redis should use different ones.
func WithPrefix(prefix string) Option {
	return func(d *Deduplicator) { d.prefix = prefix }
}

// WithLease sets how long a claim lasts without renewal, for example
// because the process crashed or stalled; the default is
// [tlwebhook.DefaultDedupLease]. While a callback runs, a Handler renews
// its claim every third of the lease, so the lease bounds how long a
// crashed holder delays the retry, not how long a callback may run. Redis
// keeps milliseconds: a lease that is not a whole number of them is
// rounded up. [New] refuses a lease under [MinLease], or under three read
// timeouts of the client.
func WithLease(lease time.Duration) Option {
	return func(d *Deduplicator) { d.lease = lease }
}

// WithRetention sets how long a completed message is remembered; the
// default is [tlwebhook.DefaultDedupRetention], longer than Svix's retry
// schedule. It is rounded up to milliseconds. [New] refuses a retention
// that is not positive.
func WithRetention(retention time.Duration) Option {
	return func(d *Deduplicator) { d.retention = retention }
}

// New returns a [Deduplicator] that keeps its records in client. It sends
// nothing to Redis until used.
//
// New refuses, with an error wrapping [tlwebhook.ErrInvalidOption], a nil
// client, a retention that is not positive, and a lease that renewal
// cannot keep alive: one under [MinLease], or, when the client is a
// [*redis.Client], [*redis.ClusterClient] or [*redis.Ring] with a read
// timeout, under three of its read timeouts (a renewal sent every third of
// the lease must be able to wait out one timeout and still arrive in time).
func New(client redis.UniversalClient, opts ...Option) (*Deduplicator, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: redisdedup.New: nil client", tlwebhook.ErrInvalidOption)
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
	if d.lease < MinLease {
		return nil, fmt.Errorf("%w: redisdedup.WithLease(%v): the lease must be at least %v (MinLease)",
			tlwebhook.ErrInvalidOption, d.lease, MinLease)
	}
	if rt := readTimeout(client); rt > 0 && d.lease < 3*rt {
		return nil, fmt.Errorf("%w: redisdedup.WithLease(%v): the lease must be at least three read timeouts of the client (%v each), so that a renewal can wait one out",
			tlwebhook.ErrInvalidOption, d.lease, rt)
	}
	if d.retention <= 0 {
		return nil, fmt.Errorf("%w: redisdedup.WithRetention(%v): the retention must be positive",
			tlwebhook.ErrInvalidOption, d.retention)
	}
	return d, nil
}

// readTimeout returns the read timeout of the clients whose options can be
// read, or 0.
func readTimeout(client redis.UniversalClient) time.Duration {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ReadTimeout
	case *redis.ClusterClient:
		return c.Options().ReadTimeout
	case *redis.Ring:
		return c.Options().ReadTimeout
	}
	return 0
}

// Lease returns how long a claim lasts without renewal ([WithLease]).
func (d *Deduplicator) Lease() time.Duration { return d.lease }

// Claim tries to claim key for the lease period; see
// [tlwebhook.Deduplicator]. It returns an error when Redis cannot be
// reached or answers with an error. The claim token is made before the
// request is sent, so that a request the client resends after losing the
// reply claims the key as the first would have.
func (d *Deduplicator) Claim(ctx context.Context, key string) (string, tlwebhook.ClaimResult, error) {
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // never fails; see crypto/rand.Read
	token := hex.EncodeToString(raw[:])

	reply, err := claimScript.Run(ctx, d.client, []string{d.prefix + key},
		token, millis(d.lease)).Int64()
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
// holds the claim on it. If it does not (the lease ran out, whether or not
// another holder claimed the key since, or the claim was settled), Complete
// changes nothing and returns an error wrapping [tlwebhook.ErrClaimLost]:
// the callback may have run beside a copy, and its success is not recorded,
// so the next delivery runs it again. Completing again with the token that
// completed the key succeeds. Complete also returns an error when Redis
// cannot be reached or answers with an error.
func (d *Deduplicator) Complete(ctx context.Context, key, token string) error {
	return d.settle(ctx, completeScript, "complete", key, token, millis(d.retention), "done:")
}

// Release frees the key for the next claim, if token still holds the
// claim on it. If it does not, Release changes nothing and returns an error
// wrapping [tlwebhook.ErrClaimLost], as [Deduplicator.Complete] does.
// Releasing again with the token that released the key succeeds (for one
// lease). Release also returns an error when Redis cannot be reached or
// answers with an error.
func (d *Deduplicator) Release(ctx context.Context, key, token string) error {
	return d.settle(ctx, releaseScript, "release", key, token, millis(d.lease), "free:")
}

// Renew extends the claim token holds on key to a full lease from now. If
// token no longer holds it, Renew changes nothing and returns an error
// wrapping [tlwebhook.ErrClaimLost]. It also returns an error when Redis
// cannot be reached or answers with an error; the claim then still expires
// when it would have.
func (d *Deduplicator) Renew(ctx context.Context, key, token string) error {
	return d.settle(ctx, renewScript, "renew", key, token, millis(d.lease), "")
}

func (d *Deduplicator) settle(ctx context.Context, script *redis.Script, op, key, token string, ms int64, resent string) error {
	if token == "" {
		return fmt.Errorf("redisdedup: %s: %w: empty token", op, tlwebhook.ErrClaimLost)
	}
	reply, err := script.Run(ctx, d.client, []string{d.prefix + key}, token, ms, resent).Int64()
	if err != nil {
		return fmt.Errorf("redisdedup: %s: %w", op, err)
	}
	if reply == replyOK {
		return nil
	}
	why, ok := lostReasons[reply]
	if !ok {
		return fmt.Errorf("redisdedup: %s: unexpected script reply %d", op, reply)
	}
	return fmt.Errorf("redisdedup: %s: %w: %s", op, tlwebhook.ErrClaimLost, why)
}

// millis converts d to whole milliseconds, rounding up.
func millis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
