package tlwebhooktest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tlwebhook/tlwebhook"
)

// toyBugs are the defects a toyDedup can be given, each against one clause
// of the Deduplicator contract.
type toyBugs struct {
	releaseIgnoresToken  bool // Release deletes the key's record, whatever the token and state (and still reports the loss)
	completeIgnoresToken bool // Complete marks the key done, whatever the token and state (and still reports the loss)
	neverInProgress      bool // a key claimed and live is claimed again
	leaseNeverEnds       bool // a claim lasts until completed or released
	retentionFromClaim   bool // a completion is kept for the retention from the claim
	sameToken            bool // every claim gets the same token
	tokenWhenInProgress  bool // ClaimInProgress comes with the holder's token
	checkThenSet         bool // Claim reads the key and writes it in two steps
	silentLoss           bool // Complete, Release and Renew return nil when the token no longer holds the claim
	renewIgnoresToken    bool // Renew extends the key's claim, whatever the token (and still reports the loss)
	renewNeverExtends    bool // Renew returns nil and changes nothing
	renewFromClaim       bool // Renew extends the claim to a lease from the claim, not from now
	wrongLease           bool // Lease reports twice the lease
	notRenewer           bool // the deduplicator is not a LeaseRenewer (and its losses are silent)
}

// toyDedup is a small Deduplicator, correct unless given bugs, kept in
// memory with the clock of the suite.
type toyDedup struct {
	lease, retention time.Duration
	now              func() time.Time
	bugs             toyBugs

	mu      sync.Mutex
	entries map[string]toyEntry
	seq     int
}

type toyEntry struct {
	token            string
	done             bool
	claimed, expires time.Time
}

func (d *toyDedup) Claim(_ context.Context, key string) (string, tlwebhook.ClaimResult, error) {
	now := d.now()
	d.mu.Lock()
	e, ok := d.entries[key]
	live := ok && now.Before(e.expires)
	if d.bugs.checkThenSet {
		d.mu.Unlock()
		time.Sleep(time.Millisecond)
		d.mu.Lock()
	}
	defer d.mu.Unlock()
	switch {
	case live && e.done:
		return "", tlwebhook.ClaimDone, nil
	case live && d.bugs.tokenWhenInProgress:
		return e.token, tlwebhook.ClaimInProgress, nil
	case live && !d.bugs.neverInProgress:
		return "", tlwebhook.ClaimInProgress, nil
	}
	d.seq++
	token := "token" + strconv.Itoa(d.seq)
	if d.bugs.sameToken {
		token = "token"
	}
	expires := now.Add(d.lease)
	if d.bugs.leaseNeverEnds {
		expires = now.Add(1000 * time.Hour)
	}
	d.entries[key] = toyEntry{token: token, claimed: now, expires: expires}
	return token, tlwebhook.ClaimAcquired, nil
}

// holds reports whether token holds a live claim on e.
func (d *toyDedup) holds(e toyEntry, ok bool, token string) bool {
	return ok && !e.done && d.now().Before(e.expires) && e.token == token
}

// lost is the error of an operation whose token no longer holds the claim.
func (d *toyDedup) lost() error {
	if d.bugs.silentLoss || d.bugs.notRenewer {
		return nil
	}
	return fmt.Errorf("toy: %w", tlwebhook.ErrClaimLost)
}

func (d *toyDedup) Complete(_ context.Context, key, token string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.entries[key]
	held := d.holds(e, ok, token)
	if held || d.bugs.completeIgnoresToken {
		from := d.now()
		if d.bugs.retentionFromClaim && ok {
			from = e.claimed
		}
		d.entries[key] = toyEntry{done: true, claimed: e.claimed, expires: from.Add(d.retention)}
	}
	if !held {
		return d.lost()
	}
	return nil
}

func (d *toyDedup) Release(_ context.Context, key, token string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.entries[key]
	held := d.holds(e, ok, token)
	if held || d.bugs.releaseIgnoresToken {
		delete(d.entries, key)
	}
	if !held {
		return d.lost()
	}
	return nil
}

func (d *toyDedup) Lease() time.Duration {
	if d.bugs.wrongLease {
		return 2 * d.lease
	}
	return d.lease
}

func (d *toyDedup) Renew(_ context.Context, key, token string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.entries[key]
	held := d.holds(e, ok, token)
	if (held || d.bugs.renewIgnoresToken && ok && !e.done) && !d.bugs.renewNeverExtends {
		from := d.now()
		if d.bugs.renewFromClaim {
			from = e.claimed
		}
		e.expires = from.Add(d.lease)
		d.entries[key] = e
	}
	if !held {
		return d.lost()
	}
	return nil
}

// toyPlain hides the Renew and Lease of a toyDedup: a Deduplicator that is
// not a LeaseRenewer.
type toyPlain struct{ d *toyDedup }

func (p toyPlain) Claim(ctx context.Context, key string) (string, tlwebhook.ClaimResult, error) {
	return p.d.Claim(ctx, key)
}
func (p toyPlain) Complete(ctx context.Context, key, token string) error {
	return p.d.Complete(ctx, key, token)
}
func (p toyPlain) Release(ctx context.Context, key, token string) error {
	return p.d.Release(ctx, key, token)
}

// toySuite returns a suite in fake time of toyDedups with bugs.
func toySuite(bugs toyBugs) DeduplicatorSuite {
	clock := NewFakeClock(time.Time{})
	return DeduplicatorSuite{
		New: func(_ *testing.T, lease, retention time.Duration) func() tlwebhook.Deduplicator {
			d := &toyDedup{lease: lease, retention: retention, now: clock.Now, bugs: bugs, entries: map[string]toyEntry{}}
			if bugs.notRenewer {
				return func() tlwebhook.Deduplicator { return toyPlain{d} }
			}
			return func() tlwebhook.Deduplicator { return d }
		},
		Now:   clock.Now,
		Sleep: clock.Advance,
	}
}
