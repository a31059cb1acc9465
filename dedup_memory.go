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
	// DefaultDedupLease is how long a claim lasts when it is neither
	// completed nor released, for example because the process crashed. It
	// is longer than [DefaultCallbackTimeout], so that a callback that
	// respects its deadline finishes within its lease.
	DefaultDedupLease = 30 * time.Second

	// DefaultDedupRetention is how long a completed key is remembered. It is
	// longer than the roughly 28 hours over which Svix retries a message.
	DefaultDedupRetention = 48 * time.Hour

	// DefaultMemoryMaxEntries is the default bound on the number of keys a
	// [MemoryDeduplicator] holds.
	DefaultMemoryMaxEntries = 100_000
)

// A MemoryOption configures a [MemoryDeduplicator].
type MemoryOption func(*MemoryDeduplicator)

// MemoryLease sets how long a claim lasts when it is neither completed nor
// released. The default is [DefaultDedupLease]. It should be longer than the
// Handler's callback timeout ([WithCallbackTimeout]). MemoryLease panics if
// d is not positive.
func MemoryLease(d time.Duration) MemoryOption {
	if d <= 0 {
		panic(fmt.Sprintf("tlwebhook: MemoryLease(%v): lease must be positive", d))
	}
	return func(m *MemoryDeduplicator) { m.lease = d }
}

// MemoryRetention sets how long a completed key is remembered. The default
// is [DefaultDedupRetention]. MemoryRetention panics if d is not positive.
func MemoryRetention(d time.Duration) MemoryOption {
	if d <= 0 {
		panic(fmt.Sprintf("tlwebhook: MemoryRetention(%v): retention must be positive", d))
	}
	return func(m *MemoryDeduplicator) { m.retention = d }
}

// MemoryMaxEntries bounds the number of keys held. The default is
// [DefaultMemoryMaxEntries]. MemoryMaxEntries panics if n is not positive.
func MemoryMaxEntries(n int) MemoryOption {
	if n <= 0 {
		panic(fmt.Sprintf("tlwebhook: MemoryMaxEntries(%d): bound must be positive", n))
	}
	return func(m *MemoryDeduplicator) { m.max = n }
}

// MemoryClock sets the function that tells the current time, for tests. The
// default is [time.Now]. MemoryClock panics if now is nil.
func MemoryClock(now func() time.Time) MemoryOption {
	if now == nil {
		panic("tlwebhook: MemoryClock(nil)")
	}
	return func(m *MemoryDeduplicator) { m.now = now }
}

// A MemoryDeduplicator is a [Deduplicator] that keeps its records in the
// memory of one process. It suits a service that runs as a single replica;
// replicas that share deliveries need a shared store such as the one in
// github.com/tlwebhook/tlwebhook/redisdedup. It is safe for concurrent use,
// and Claim, Complete and Release take constant time.
//
// The table is bounded ([MemoryMaxEntries]). Expired entries are dropped as
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
// [ErrDeduplicatorFull]. Complete and Release never fail.
type MemoryDeduplicator struct {
	lease     time.Duration
	retention time.Duration
	max       int
	now       func() time.Time
	base      time.Time // times are kept as offsets from base

	mu      sync.Mutex
	entries map[string]*memEntry
	claims  memList // claimed entries, oldest claim first
	done    memList // completed entries, oldest completion first
}

// memEntry is one key's record; it sits in exactly one of the two lists.
// Because the lease and the retention are fixed, each list is in order of
// expiry too.
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

// NewMemoryDeduplicator returns an empty [MemoryDeduplicator].
func NewMemoryDeduplicator(opts ...MemoryOption) *MemoryDeduplicator {
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
	m.base = m.now()
	m.claims.init()
	m.done.init()
	return m
}

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
// a live claim on it; otherwise it does nothing. It returns nil.
func (m *MemoryDeduplicator) Complete(_ context.Context, key, token string) error {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.holder(key, token, now)
	if e == nil {
		return nil
	}
	e.unlink()
	e.done = true
	e.expires = now + m.retention
	m.done.pushBack(e)
	return nil
}

// Release deletes the claim on key, if token holds a live claim on it;
// otherwise it does nothing. It returns nil.
func (m *MemoryDeduplicator) Release(_ context.Context, key, token string) error {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.holder(key, token, now); e != nil {
		m.remove(e)
	}
	return nil
}

// holder returns key's entry if it is a live claim held by token, else nil.
// A claim whose lease has passed is treated as gone, as in a store where it
// would have expired.
func (m *MemoryDeduplicator) holder(key, token string, now time.Duration) *memEntry {
	e, ok := m.entries[key]
	if !ok || e.done || now >= e.expires || string(e.token[:]) != token {
		return nil
	}
	return e
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

var _ Deduplicator = (*MemoryDeduplicator)(nil)
