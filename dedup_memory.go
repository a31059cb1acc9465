package tlwebhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Defaults of [NewMemoryDeduplicator].
const (
	// DefaultDedupLease is how long a claim lasts without renewal, for
	// example because the process crashed. While a callback runs, the
	// [Handler] renews its claim every third of the lease (see
	// [LeaseRenewer]), so the lease bounds how long a crashed holder
	// delays the retry, not how long a callback may run.
	DefaultDedupLease = 30 * time.Second

	// DefaultDedupRetention is how long a completed key is remembered. It is
	// longer than the roughly 28 hours over which Svix retries a message.
	DefaultDedupRetention = 48 * time.Hour

	// DefaultMemoryMaxEntries is the default bound on the number of keys a
	// [MemoryDeduplicator] holds.
	DefaultMemoryMaxEntries = 100_000
)

// MinMemoryLease is the shortest lease [NewMemoryDeduplicator] accepts. A
// [Handler] renews a claim every third of the lease; below a tenth of a
// second, ordinary scheduling delays (a busy machine, a garbage collection)
// would let claims lapse while their callbacks still run.
const MinMemoryLease = 100 * time.Millisecond

// A MemoryOption configures a [MemoryDeduplicator]. [NewMemoryDeduplicator]
// checks the values. The options have the names of redisdedup's
// (WithLease, WithRetention), so that both deduplicators are configured the
// same way; giving one to [NewHandler] does not compile.
type MemoryOption func(*MemoryDeduplicator)

// WithLease sets how long a claim lasts without renewal. The default is
// [DefaultDedupLease]; [NewMemoryDeduplicator] refuses a lease under
// [MinMemoryLease].
func WithLease(d time.Duration) MemoryOption {
	return func(m *MemoryDeduplicator) { m.lease = d }
}

// WithRetention sets how long a completed key is remembered. The default
// is [DefaultDedupRetention]; [NewMemoryDeduplicator] refuses a retention
// that is not positive.
func WithRetention(d time.Duration) MemoryOption {
	return func(m *MemoryDeduplicator) { m.retention = d }
}

// WithMaxEntries bounds the number of keys held. The default is
// [DefaultMemoryMaxEntries]; [NewMemoryDeduplicator] refuses a bound that
// is not positive.
func WithMaxEntries(n int) MemoryOption {
	return func(m *MemoryDeduplicator) { m.max = n }
}

// WithDeduplicatorClock sets the function that tells the current time, for tests. The
// default is [time.Now]; [NewMemoryDeduplicator] refuses nil.
func WithDeduplicatorClock(now func() time.Time) MemoryOption {
	return func(m *MemoryDeduplicator) {
		m.now = now
		m.nilClock = now == nil
	}
}

// A MemoryDeduplicator is a [Deduplicator] that keeps its records in the
// memory of one process, and a [LeaseRenewer]. It suits a service that runs
// as a single replica; replicas that share deliveries need a shared store
// such as the one in github.com/tlwebhook/tlwebhook/redisdedup. It is safe
// for concurrent use, and its methods take constant time.
//
// The table is bounded ([WithMaxEntries]). Expired entries are dropped as
// the table is used. When a new key arrives and the table is full, the
// deduplicator evicts an expired entry if there is one, else the oldest
// completed entry (so a very old duplicate could run again); it never
// evicts a live claim: if every entry is one, Claim fails with
// [ErrDeduplicatorFull].
//
// Memory: an entry with a 40-byte key (the length of Tensorlake's event
// ids) takes 160 to 190 bytes, depending on how full the map happens to be:
// 80 for the record, 48 for the key's copy, the rest the map's share
// (measured on linux/amd64 with Go 1.26 by TestMemoryBytesPerEntry). Longer
// keys add their extra length. The default bound of 100 000 entries thus
// comes to at most about 19 MB.
//
// Claim never blocks on I/O and ignores its context; it fails only with
// [ErrDeduplicatorFull]. Complete, Release and Renew fail only when the
// token no longer holds the claim, with an error wrapping [ErrClaimLost]:
// its lease ran out (whether or not the key was claimed again since; a
// claim whose lease passed counts as gone even before another claim
// replaces it), or the claim was settled, or the token was never issued
// for the key. They then change nothing. Completing a key again with the
// token that completed it succeeds, as a resent request does with a
// networked store.
type MemoryDeduplicator struct {
	lease     time.Duration
	retention time.Duration
	max       int
	now       func() time.Time
	nilClock  bool      // WithDeduplicatorClock(nil) was given
	base      time.Time // times are kept as offsets from base

	mu      sync.Mutex
	entries map[string]*memEntry
	claims  memList // claimed entries, earliest expiry first
	done    memList // completed entries, oldest completion first
}

// memEntry is one key's record; it sits in exactly one of the two lists.
// Because the lease and the retention are fixed, and a renewed claim moves
// to the back of its list, each list is in order of expiry.
type memEntry struct {
	key        string
	expires    time.Duration // offset from base
	token      [2 * tokenBytes]byte
	done       bool
	prev, next *memEntry
}

// tokenBytes is the number of random bytes in a claim token.
const tokenBytes = 16

// sweepBatch is how many expired entries of each list a Claim drops on the
// way, so that expired entries do not pile up while latency stays bounded.
const sweepBatch = 4

// NewMemoryDeduplicator returns an empty [MemoryDeduplicator]. It refuses,
// with an error wrapping [ErrInvalidOption], options that cannot work: a
// lease under [MinMemoryLease], a retention or a bound that is not
// positive, a nil clock.
func NewMemoryDeduplicator(opts ...MemoryOption) (*MemoryDeduplicator, error) {
	m := &MemoryDeduplicator{
		lease:     DefaultDedupLease,
		retention: DefaultDedupRetention,
		max:       DefaultMemoryMaxEntries,
		now:       time.Now,
		entries:   make(map[string]*memEntry),
	}
	for _, opt := range opts {
		if opt != nil {
			opt(m)
		}
	}
	switch {
	case m.lease < MinMemoryLease:
		return nil, fmt.Errorf("%w: WithLease(%v): the lease must be at least %v (MinMemoryLease), so that renewals every third of it come in time",
			ErrInvalidOption, m.lease, MinMemoryLease)
	case m.retention <= 0:
		return nil, fmt.Errorf("%w: WithRetention(%v): the retention must be positive", ErrInvalidOption, m.retention)
	case m.max <= 0:
		return nil, fmt.Errorf("%w: WithMaxEntries(%d): the bound must be positive", ErrInvalidOption, m.max)
	case m.nilClock:
		return nil, fmt.Errorf("%w: WithDeduplicatorClock(nil)", ErrInvalidOption)
	}
	m.base = m.now()
	m.claims.init()
	m.done.init()
	return m, nil
}

// Lease returns how long a claim lasts without renewal ([WithLease]).
func (m *MemoryDeduplicator) Lease() time.Duration { return m.lease }

// clock returns the current time as an offset from base. With the default
// clock the offset uses the monotonic clock, so wall-clock jumps do not
// shorten or stretch leases.
func (m *MemoryDeduplicator) clock() time.Duration { return m.now().Sub(m.base) }

// Claim claims key for the lease period; see [Deduplicator].
func (m *MemoryDeduplicator) Claim(_ context.Context, key string) (string, ClaimResult, error) {
	var raw [tokenBytes]byte
	_, _ = rand.Read(raw[:]) // never fails; see crypto/rand.Read
	var token [2 * tokenBytes]byte
	hex.Encode(token[:], raw[:])

	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)

	if e, ok := m.entries[key]; ok {
		if now < e.expires {
			if e.done {
				return "", ClaimDone, nil
			}
			return "", ClaimInProgress, nil
		}
		// The claim's lease or the completion's retention has passed:
		// claim the key afresh.
		e.unlink()
		m.claim(e, token, now)
		return string(token[:]), ClaimAcquired, nil
	}
	if len(m.entries) >= m.max && !m.evict(now) {
		return "", 0, fmt.Errorf("%w (%d entries)", ErrDeduplicatorFull, len(m.entries))
	}
	e := &memEntry{key: strings.Clone(key)}
	m.entries[e.key] = e
	m.claim(e, token, now)
	return string(token[:]), ClaimAcquired, nil
}

// claim makes e a fresh claim with token and puts it at the back of the
// claims list. e must be in no list.
func (m *MemoryDeduplicator) claim(e *memEntry, token [2 * tokenBytes]byte, now time.Duration) {
	e.token = token
	e.done = false
	e.expires = now + m.lease
	m.claims.pushBack(e)
}

// Complete marks key as processed for the retention period, if token holds
// a live claim on it; see [MemoryDeduplicator] for when it returns an error
// wrapping [ErrClaimLost] instead.
func (m *MemoryDeduplicator) Complete(_ context.Context, key, token string) error {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.holder(key, token, now)
	if err != nil {
		if e != nil && e.done && now < e.expires && string(e.token[:]) == token {
			return nil // completed by this very token already
		}
		return fmt.Errorf("complete: %w", err)
	}
	e.unlink()
	e.done = true
	e.expires = now + m.retention
	m.done.pushBack(e)
	return nil
}

// Release deletes the claim on key, if token holds a live claim on it; see
// [MemoryDeduplicator] for when it returns an error wrapping [ErrClaimLost]
// instead.
func (m *MemoryDeduplicator) Release(_ context.Context, key, token string) error {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.holder(key, token, now)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	m.remove(e)
	return nil
}

// Renew extends the claim token holds on key to a full lease from now; see
// [LeaseRenewer]. If token no longer holds a live claim on it, Renew
// changes nothing and returns an error wrapping [ErrClaimLost].
func (m *MemoryDeduplicator) Renew(_ context.Context, key, token string) error {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.holder(key, token, now)
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	// A renewed claim expires last: moving it to the back keeps the list
	// in order of expiry.
	e.unlink()
	e.expires = now + m.lease
	m.claims.pushBack(e)
	return nil
}

// holder returns key's entry, and nil if it is a live claim held by token;
// otherwise an error wrapping ErrClaimLost that says why. A claim whose
// lease has passed is treated as gone, as in a store where it would have
// expired.
func (m *MemoryDeduplicator) holder(key, token string, now time.Duration) (*memEntry, error) {
	e, ok := m.entries[key]
	switch {
	case !ok || now >= e.expires:
		if ok && !e.done && string(e.token[:]) == token {
			return e, fmt.Errorf("%w: the lease ran out", ErrClaimLost)
		}
		return e, fmt.Errorf("%w: no record: the lease ran out, or the claim never existed", ErrClaimLost)
	case e.done:
		return e, fmt.Errorf("%w: the key is completed", ErrClaimLost)
	case string(e.token[:]) != token:
		return e, fmt.Errorf("%w: another holder holds the claim", ErrClaimLost)
	}
	return e, nil
}

// Len returns the number of entries held, including expired ones not yet
// dropped.
func (m *MemoryDeduplicator) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// sweep drops a few expired entries from the front of each list.
func (m *MemoryDeduplicator) sweep(now time.Duration) {
	for _, l := range [...]*memList{&m.done, &m.claims} {
		for i := 0; i < sweepBatch; i++ {
			e := l.front()
			if e == nil || now < e.expires {
				break
			}
			m.remove(e)
		}
	}
}

// evict makes room for one entry: it drops an expired entry, else the
// oldest completed one. It reports false if every entry is a live claim.
func (m *MemoryDeduplicator) evict(now time.Duration) bool {
	if e := m.done.front(); e != nil && now >= e.expires {
		m.remove(e)
		return true
	}
	if e := m.claims.front(); e != nil && now >= e.expires {
		m.remove(e)
		return true
	}
	if e := m.done.front(); e != nil {
		m.remove(e)
		return true
	}
	return false
}

func (m *MemoryDeduplicator) remove(e *memEntry) {
	e.unlink()
	delete(m.entries, e.key)
}

// memList is an intrusive doubly-linked list with a sentinel, so that an
// entry costs one allocation and moving it between lists costs none.
type memList struct{ root memEntry }

func (l *memList) init() { l.root.prev, l.root.next = &l.root, &l.root }

func (l *memList) front() *memEntry {
	if l.root.next == &l.root {
		return nil
	}
	return l.root.next
}

func (l *memList) pushBack(e *memEntry) {
	last := l.root.prev
	e.prev, e.next = last, &l.root
	last.next = e
	l.root.prev = e
}

// unlink takes e out of its list, if any.
func (e *memEntry) unlink() {
	if e.prev == nil {
		return
	}
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

var (
	_ Deduplicator = (*MemoryDeduplicator)(nil)
	_ LeaseRenewer = (*MemoryDeduplicator)(nil)
)
