package tlwebhooktest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tlwebhook/tlwebhook"
)

// dedupRun is the state of one scenario being played. Its operations
// (claim, dup, complete, release, renew, their lost forms, and the waits)
// check what the deduplicator answers; the first that fails is kept in err
// with its step number, and every later operation does nothing, so that a
// scenario reads as the list of its steps.
type dedupRun struct {
	ctx            context.Context
	open           func() tlwebhook.Deduplicator
	d              tlwebhook.Deduplicator // opened once, for the operations
	lr             tlwebhook.LeaseRenewer // d, if it is one
	renews         bool                   // d is a LeaseRenewer
	now            func() time.Time
	sleep          func(time.Duration)
	period, margin time.Duration
	issued         map[string]bool // every token a claim returned
	shortLease     bool            // claims last a period
	leases         map[string]span // when each token's lease last began: its claim or latest renewal

	step int   // operations played
	err  error // the first failure
}

// span is when an operation was called and when it returned. A period
// that the operation starts (a lease, a retention) ends a period after a
// time within the span; the zero span is no period.
type span struct{ start, end time.Time }

// held is a claim as a scenario holds it: the key it is on, the token it
// got, and when it was made.
type held struct {
	key, token string
	at         span
}

// altered returns h with a token that differs from h's by one character
// appended, as a client that mangled it would send.
func (h held) altered() held {
	h.token += "x"
	return h
}

// on returns h's token put to use on another key.
func (h held) on(key string) held {
	h.key = key
	return h
}

// Tokens no claim returned.
const (
	neverIssued = "00000000000000000000000000000000"
	emptyToken  = ""
)

// forged is a claim of key with a token that no claim returned.
func forged(key, token string) held { return held{key: key, token: token} }

// fail records err as the failure of the current step, unless one came
// before.
func (r *dedupRun) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// begin starts a step described by what; it reports false when an earlier
// step failed, and the step is not played.
func (r *dedupRun) begin(what string, args ...any) (func(error), bool) {
	if r.err != nil {
		return nil, false
	}
	r.step++
	step := r.step
	desc := fmt.Sprintf(what, args...)
	return func(err error) {
		if err != nil {
			r.fail(fmt.Errorf("step %d, %s: %w", step, desc, err))
		}
	}, true
}

func (r *dedupRun) sleepUntil(t time.Time) {
	if d := t.Sub(r.now()); d > 0 {
		r.sleep(d)
	}
}

// late reports whether an operation that returned at end came too late to
// be sure that the period which began within mark had not ended.
func (r *dedupRun) late(mark span, end time.Time) bool {
	return !mark.start.IsZero() && !end.Before(mark.start.Add(r.period))
}

// claim claims key, which must be free, and returns the claim.
func (r *dedupRun) claim(key string) held {
	check, ok := r.begin("claim %q", key)
	if !ok {
		return held{key: key}
	}
	h, err := r.tryClaim(key, tlwebhook.ClaimAcquired, span{})
	check(err)
	return h
}

// dup claims key, expecting want (ClaimInProgress or ClaimDone) as long as
// the period that began within live has not ended: a claim answered after
// it ended is put down to a slow machine ([errTooSlow]) rather than
// failed. Give the zero span when no period is at stake.
func (r *dedupRun) dup(key string, want tlwebhook.ClaimResult, live span) {
	if check, ok := r.begin("claim %q, expecting %v", key, want); ok {
		_, err := r.tryClaim(key, want, live)
		check(err)
	}
}

func (r *dedupRun) tryClaim(key string, want tlwebhook.ClaimResult, live span) (held, error) {
	start := r.now()
	token, res, err := r.d.Claim(r.ctx, key)
	end := r.now()
	h := held{key: key, token: token, at: span{start, end}}
	if err != nil {
		return h, fmt.Errorf("error from Claim: %w", err)
	}
	if res != want {
		if res == tlwebhook.ClaimAcquired && r.late(live, end) {
			return h, fmt.Errorf("%w: claimed, but answered after the period at stake ended", errTooSlow)
		}
		return h, fmt.Errorf("got %v, want %v", res, want)
	}
	if res != tlwebhook.ClaimAcquired {
		if token != "" {
			return h, fmt.Errorf("got %v with token %q, want no token", res, token)
		}
		return h, nil
	}
	r.leases[token] = h.at
	return h, r.newToken(token)
}

// complete completes h's claim, which must hold, and returns when the
// retention began.
func (r *dedupRun) complete(h held) span { return r.settle("Complete", h, false) }

// completeLost completes with h, which no longer holds its claim.
func (r *dedupRun) completeLost(h held) { r.settle("Complete", h, true) }

// release releases h's claim, which must hold.
func (r *dedupRun) release(h held) { r.settle("Release", h, false) }

// releaseLost releases with h, which no longer holds its claim.
func (r *dedupRun) releaseLost(h held) { r.settle("Release", h, true) }

// renew renews h's claim, which must hold, and returns when its new lease
// began.
func (r *dedupRun) renew(h held) span { return r.settle("Renew", h, false) }

// renewLost renews with h, which no longer holds its claim.
func (r *dedupRun) renewLost(h held) { r.settle("Renew", h, true) }

// settle plays one Complete, Release or Renew (op) with h's token: it must
// succeed, or, when the token no longer holds the claim (lost), change
// nothing and return an error wrapping ErrClaimLost.
func (r *dedupRun) settle(op string, h held, lost bool) span {
	what := "%s %q with token %q"
	if lost {
		what += ", which no longer holds the claim"
	}
	check, ok := r.begin(what, op, h.key, h.token)
	if !ok {
		return span{}
	}
	start := r.now()
	var err error
	switch op {
	case "Complete":
		err = r.d.Complete(r.ctx, h.key, h.token)
	case "Release":
		err = r.d.Release(r.ctx, h.key, h.token)
	default:
		if !r.renews {
			check(errNotRenewer)
			return span{}
		}
		err = r.lr.Renew(r.ctx, h.key, h.token)
	}
	at := span{start, r.now()}
	if !lost && errors.Is(err, tlwebhook.ErrClaimLost) && r.shortLease && r.late(r.leases[h.token], at.end) {
		check(fmt.Errorf("%w: the claim was lost, but the answer came after its lease ended: %w", errTooSlow, err))
		return at
	}
	if err == nil && op == "Renew" {
		r.leases[h.token] = at
	}
	check(r.settled(op, err, lost))
	return at
}

// settled checks the error of a Complete, Release or Renew (op): nil when
// the token holds the claim; when it no longer does (lost), an error
// wrapping ErrClaimLost, which a deduplicator that cannot renew may leave
// out.
func (r *dedupRun) settled(op string, err error, lost bool) error {
	switch {
	case !lost && err != nil:
		return fmt.Errorf("error from %s: %w", op, err)
	case lost && err != nil && !errors.Is(err, tlwebhook.ErrClaimLost):
		return fmt.Errorf("error from %s with a token that no longer holds the claim: %w; want one wrapping tlwebhook.ErrClaimLost", op, err)
	case lost && err == nil && r.renews:
		return fmt.Errorf("%s with a token that no longer holds the claim returned nil; a LeaseRenewer must return an error wrapping tlwebhook.ErrClaimLost", op)
	}
	return nil
}

// newToken checks that a claim's token is not empty and was not issued
// before in this scenario, and records it.
func (r *dedupRun) newToken(token string) error {
	switch {
	case token == "":
		return errors.New("claimed with an empty token")
	case r.issued[token]:
		return fmt.Errorf("claimed with token %q, which an earlier claim got", token)
	}
	r.issued[token] = true
	return nil
}

// wait lets one period pass.
func (r *dedupRun) wait() {
	if _, ok := r.begin("wait one period"); ok {
		r.sleep(r.period)
	}
}

// untilLive waits until Margin before the period that began within mark
// ends: what it started must still be in force.
func (r *dedupRun) untilLive(mark span) {
	if _, ok := r.begin("wait until just before a period ends"); ok {
		r.sleepUntil(mark.start.Add(r.period - r.margin))
	}
}

// untilGone waits until Margin after the period that began within mark
// ends: what it started must be over.
func (r *dedupRun) untilGone(mark span) {
	if _, ok := r.begin("wait until just after a period ends"); ok {
		r.sleepUntil(mark.end.Add(r.period + r.margin))
	}
}
