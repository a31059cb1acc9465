package tlwebhook

import (
	"context"
	"time"
)

// ClaimResult is the answer of a [Deduplicator] to a claim.
type ClaimResult int

// Claim results.
const (
	// ClaimAcquired means the caller now holds the key and must process the
	// delivery, then call Complete (success) or Release (failure).
	ClaimAcquired ClaimResult = iota + 1
	// ClaimInProgress means another holder's claim on the key is still live:
	// the delivery is being processed elsewhere. The Handler answers 409 so
	// that Svix retries later.
	ClaimInProgress
	// ClaimDone means the key was processed successfully within the
	// retention period. The Handler answers 2xx without running the
	// callback.
	ClaimDone
)

// String returns the result's name.
func (r ClaimResult) String() string {
	switch r {
	case ClaimAcquired:
		return "acquired"
	case ClaimInProgress:
		return "in-progress"
	case ClaimDone:
		return "done"
	}
	return "ClaimResult(?)"
}

// A Deduplicator records which messages have been processed, so that a
// [Handler] configured with [WithDeduplicator] runs each message's callback
// once even though Svix delivers at least once. Keys are
// [Delivery.IdempotencyKey] values. Implementations must be safe for
// concurrent use, and across processes when they are shared.
//
// The protocol: Claim atomically claims a key for a lease period and returns
// a token unique to this claim. The holder then calls Complete, which marks
// the key done for a retention period, or Release, which deletes the claim
// so that a retry can run. Complete and Release must act only when the token
// still matches, so that a holder whose lease expired never affects a later
// claim. A claim neither completed nor released expires after its lease.
//
// [NewMemoryDeduplicator] keeps the records in one process; the nested
// module github.com/tlwebhook/tlwebhook/redisdedup shares them across
// processes through Redis.
type Deduplicator interface {
	// Claim tries to claim key. token is meaningful only when result is
	// ClaimAcquired. An error means the store could not be consulted; the
	// Handler then answers 503 and runs nothing.
	Claim(ctx context.Context, key string) (token string, result ClaimResult, err error)
	// Complete marks key as processed, if token still holds the claim.
	Complete(ctx context.Context, key, token string) error
	// Release deletes the claim on key, if token still holds it.
	Release(ctx context.Context, key, token string) error
}

// A LeaseRenewer is a [Deduplicator] whose claims can be renewed. While a
// callback runs, a [Handler] renews its claim every third of the lease, so
// that a callback slower than the lease never lets a copy run beside it.
// [NewMemoryDeduplicator] and the redisdedup module implement it.
type LeaseRenewer interface {
	// Lease returns how long a claim lives without renewal.
	Lease() time.Duration
	// Renew extends the claim on key held by token by a full lease. It
	// returns an error wrapping [ErrClaimLost] when token no longer holds
	// the claim.
	Renew(ctx context.Context, key, token string) error
}
