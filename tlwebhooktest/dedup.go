package tlwebhooktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlwebhook/tlwebhook"
)

// DeduplicatorSuite describes a [tlwebhook.Deduplicator] implementation to
// [TestDeduplicator]: how to make one, and how time passes for it.
type DeduplicatorSuite struct {
	// New prepares a new, empty store for one scenario, whose claims last
	// lease and whose completions are kept for retention, and returns a
	// function that opens a Deduplicator on that store. Most scenarios
	// open it once; those that play several replicas open it once per
	// replica, and expect all the Deduplicators opened to share the
	// store, as separate processes would. A store kept in memory may
	// return the same Deduplicator every time; a networked one should
	// give each its own client. t is the scenario's test: New may
	// register cleanups with t.Cleanup, and stop with t.Fatal or t.Skip.
	// New is required.
	New func(t *testing.T, lease, retention time.Duration) (open func() tlwebhook.Deduplicator)

	// Now and Sleep are how the scenarios tell and pass the time of the
	// deduplicators New makes. Leave both nil for real time ([time.Now]
	// and [time.Sleep]), as a store with its own clock, such as Redis,
	// needs: the scenarios then run in parallel, so that their waits
	// overlap. For a deduplicator with an injectable clock, set Now to the
	// fake clock and Sleep to a function that advances it: the scenarios
	// then run one after another and take no time. Set both or neither;
	// Now must be safe for concurrent use.
	Now   func() time.Time
	Sleep func(time.Duration)

	// Period is the lease or the retention of the scenarios that wait for
	// one to pass; the other scenarios use an hour, which they never
	// reach. A check that must see a claim still live has to be answered
	// within Period, so with real time it must cover a few round trips to
	// the store. Zero means 200ms. It must be less than a minute.
	Period time.Duration

	// Margin is how close to the end of a period the scenarios look: they
	// expect a claim or a completion still in force Margin before its
	// period ends, and gone Margin after. Zero means a nanosecond with a
	// fake clock, which checks the boundaries closely, and half of Period
	// with real time, which leaves room for the scheduler and for stores
	// that count time coarsely (Redis counts milliseconds). It must be at
	// most half of Period.
	Margin time.Duration
}

// Defaults of [DeduplicatorSuite].
const (
	defaultSuitePeriod = 200 * time.Millisecond
	suiteLongPeriod    = time.Hour
)

// TestDeduplicator checks that the deduplicators s describes keep the
// [tlwebhook.Deduplicator] contract, with one subtest per scenario, in the
// manner of [testing/fstest.TestFS]:
//
//   - the first Claim of a key claims it, with a non-empty token that no
//     other claim got; keys are independent;
//   - a Claim while the key is claimed answers ClaimInProgress, and one after
//     Complete answers ClaimDone, both with an empty token;
//   - a completed key is ClaimDone until the retention has passed since
//     its completion, then can be claimed again;
//   - Release lets the next Claim claim the key;
//   - a claim neither completed nor released (the holder crashed) is
//     ClaimInProgress until its lease passes, then can be claimed again;
//   - Complete and Release do nothing with a token that no longer holds
//     the claim: a stale token (its lease passed, whether or not the key
//     was claimed again), a token of another key, an altered, never-issued
//     or empty token, or once the claim was settled; and the current
//     holder's token still works after them;
//   - of 50 goroutines claiming one key at once, each through a
//     Deduplicator of its own, exactly one claims it;
//   - [tlwebhook.Handler] replicas sharing the store run the callback of
//     a message once among 50 concurrent copies, answer 409 to the copies
//     that meet it in progress and 2xx to later ones, run it again after
//     a failure, and run it once the lease of a crashed holder passes.
//
// A deduplicator that is also a [tlwebhook.LeaseRenewer] is held to more:
//
//   - Lease reports the lease it was made with;
//   - Renew extends the claim to a full lease from the renewal, any number
//     of times, and does nothing for a token that no longer holds it;
//   - Complete, Release and Renew with a token that no longer holds the
//     claim return an error wrapping [tlwebhook.ErrClaimLost] (a
//     deduplicator that cannot renew may return nil there, or that error);
//   - Handlers keep a claim for as long as its callback runs, past the
//     lease: a copy meets it in progress (409) and the callback runs once;
//   - a holder stalled past its lease (its renewals blocked) lets a copy
//     run, and its Handler then logs the lost claim at error level.
//
// The scenarios of the LeaseRenewer are skipped, saying so, for a
// deduplicator that is not one. Every other Claim, Complete, Release and
// Renew must succeed (return a nil error). With real time the scenarios
// take about three Periods in all, and one whose check could not be made in
// time, because the machine was too slow, is skipped with a message. A
// suite without New, with only one of Now and Sleep, or with Period or
// Margin out of range fails t at once.
//
// A deduplicator kept in memory, with an injectable clock, is checked in
// fake time (clock is any fake clock):
//
//	func TestMyDeduplicator(t *testing.T) {
//		clock := newFakeClock()
//		tlwebhooktest.TestDeduplicator(t, tlwebhooktest.DeduplicatorSuite{
//			New: func(t *testing.T, lease, retention time.Duration) func() tlwebhook.Deduplicator {
//				d := mydedup.New(lease, retention, clock.Now)
//				return func() tlwebhook.Deduplicator { return d }
//			},
//			Now:   clock.Now,
//			Sleep: clock.Advance,
//		})
//	}
//
// A deduplicator that shares a server is checked in real time, each
// scenario under a namespace of its own, each replica with its own client:
//
//	tlwebhooktest.TestDeduplicator(t, tlwebhooktest.DeduplicatorSuite{
//		New: func(t *testing.T, lease, retention time.Duration) func() tlwebhook.Deduplicator {
//			prefix := freshPrefix(t) // whose keys a t.Cleanup deletes
//			return func() tlwebhook.Deduplicator {
//				return mydedup.New(newClient(t), prefix, lease, retention)
//			}
//		},
//	})
func TestDeduplicator(t *testing.T, s DeduplicatorSuite) {
	t.Helper()
	cfg, err := s.config()
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range dedupScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			if cfg.realTime {
				t.Parallel()
			}
			err := cfg.run(t, sc)
			switch {
			case errors.Is(err, errTooSlow), errors.Is(err, errNotRenewer):
				t.Skip(err)
			case err != nil:
				t.Error(err)
			}
		})
	}
}

// suiteConfig is a [DeduplicatorSuite] with its defaults filled in.
type suiteConfig struct {
	DeduplicatorSuite
	realTime bool
}

func (s DeduplicatorSuite) config() (suiteConfig, error) {
	c := suiteConfig{DeduplicatorSuite: s}
	if c.New == nil {
		return c, errors.New("tlwebhooktest: DeduplicatorSuite.New is nil")
	}
	if (c.Now == nil) != (c.Sleep == nil) {
		return c, errors.New("tlwebhooktest: DeduplicatorSuite: set both Now and Sleep, or neither")
	}
	if c.Now == nil {
		c.realTime = true
		c.Now, c.Sleep = time.Now, time.Sleep
	}
	if c.Period == 0 {
		c.Period = defaultSuitePeriod
	}
	if c.Period < 0 || c.Period >= time.Minute {
		return c, fmt.Errorf("tlwebhooktest: DeduplicatorSuite.Period %v: want more than 0 and less than a minute", c.Period)
	}
	if c.Margin == 0 {
		c.Margin = time.Nanosecond
		if c.realTime {
			c.Margin = c.Period / 2
		}
	}
	if c.Margin < 0 || c.Margin > c.Period/2 {
		return c, fmt.Errorf("tlwebhooktest: DeduplicatorSuite.Margin %v: want more than 0 and at most half of Period (%v)", c.Margin, c.Period)
	}
	return c, nil
}

// run prepares a store for sc and plays sc on it.
func (c suiteConfig) run(t *testing.T, sc dedupScenario) error {
	dur := func(p dedupPeriod) time.Duration {
		if p == short {
			return c.Period
		}
		return suiteLongPeriod
	}
	open := c.New(t, dur(sc.lease), dur(sc.retention))
	if open == nil {
		return errors.New("DeduplicatorSuite.New returned a nil open function")
	}
	r := &dedupRun{
		ctx:    context.Background(),
		open:   open,
		now:    c.Now,
		sleep:  c.Sleep,
		period: c.Period,
		margin: c.Margin,
		tokens: map[string]string{"never-issued": "00000000000000000000000000000000", "empty": ""},
		issued: map[string]bool{},
		marks:  map[string]span{},
	}
	if r.d = open(); r.d == nil {
		return errors.New("the open function of DeduplicatorSuite.New returned nil")
	}
	r.lr, r.renews = r.d.(tlwebhook.LeaseRenewer)
	if sc.renewer && !r.renews {
		return errNotRenewer
	}
	if sc.renewer {
		if got, want := r.lr.Lease(), dur(sc.lease); got != want {
			return fmt.Errorf("Lease() = %v, want %v, the lease given to DeduplicatorSuite.New", got, want)
		}
	}
	if sc.steps != nil {
		return r.play(sc.steps)
	}
	return sc.run(r)
}

// errTooSlow marks a check that real time overtook: its result was
// expected only if it came before a period ended, and it came after.
var errTooSlow = errors.New("too slow to observe the period; skipped")

// errNotRenewer marks a scenario of the LeaseRenewer contract played on a
// deduplicator that does not implement it.
var errNotRenewer = errors.New("the Deduplicator is not a tlwebhook.LeaseRenewer; scenario skipped")

// dedupPeriod is how long a scenario's lease or retention is.
type dedupPeriod int

const (
	long  dedupPeriod = iota // an hour, never reached
	short                    // the suite's Period, waited out
)

// A dedupScenario is a sequence of steps, or a function for what steps
// cannot say.
type dedupScenario struct {
	name             string
	lease, retention dedupPeriod
	renewer          bool // a scenario of the LeaseRenewer contract
	steps            []dedupStep
	run              func(*dedupRun) error
}

// span is when an operation was called and when it returned.
type span struct{ start, end time.Time }

// dedupRun is the state of one scenario being played.
type dedupRun struct {
	ctx            context.Context
	open           func() tlwebhook.Deduplicator
	d              tlwebhook.Deduplicator // opened once, for the steps
	lr             tlwebhook.LeaseRenewer // d, if it is one
	renews         bool                   // d is a LeaseRenewer
	now            func() time.Time
	sleep          func(time.Duration)
	period, margin time.Duration
	tokens         map[string]string // claim tokens, by name
	issued         map[string]bool   // every token a claim returned
	marks          map[string]span   // when the named claims and completions were made
}

func (r *dedupRun) sleepUntil(t time.Time) {
	if d := t.Sub(r.now()); d > 0 {
		r.sleep(d)
	}
}

// late reports whether an operation that returned at end came too late to
// be sure the period that began with the operation at mark had not ended.
func (r *dedupRun) late(mark string, end time.Time) bool {
	m, ok := r.marks[mark]
	return ok && !end.Before(m.start.Add(r.period))
}

// stepOp is what a step does.
type stepOp int

const (
	opClaim     stepOp = iota + 1
	opComplete         // complete key with a named token
	opRelease          // release key with a named token
	opRenew            // renew key's claim with a named token
	opWait             // wait one period
	opUntilLive        // wait until Margin before the period from a mark ends
	opUntilGone        // wait until Margin after the period from a mark ends
)

// A dedupStep is one operation of a scenario.
type dedupStep struct {
	op  stepOp
	key string
	// name is, for a claim, the name its token and time are kept under
	// (the name of a completion's time is the token's name followed by
	// " completed"); for Complete and Release, the name of the token to
	// use; for a wait, the mark it counts from. Tokens named
	// "never-issued" and "empty" are predefined, and "NAME+x" is NAME's
	// token with an x appended.
	name string
	want tlwebhook.ClaimResult
	// live is, for a claim that should not claim, the mark whose period
	// must not have ended for want to hold: a claim answered after it
	// ended is put down to a slow machine rather than failed.
	live string
	// lost is, for Complete, Release and Renew, that the token no longer
	// holds the claim: the step must change nothing and return an error
	// wrapping ErrClaimLost, or nil from a deduplicator that cannot renew.
	lost bool
}

func stepClaim(key, name string) dedupStep {
	return dedupStep{op: opClaim, key: key, name: name, want: tlwebhook.ClaimAcquired}
}

// stepDup is a claim of key expected to answer want, ClaimInProgress or
// ClaimDone, as long as the period from the mark live has not ended ("" if
// none is at stake).
func stepDup(key string, want tlwebhook.ClaimResult, live string) dedupStep {
	return dedupStep{op: opClaim, key: key, want: want, live: live}
}

func stepComplete(key, token string) dedupStep {
	return dedupStep{op: opComplete, key: key, name: token}
}

func stepRelease(key, token string) dedupStep {
	return dedupStep{op: opRelease, key: key, name: token}
}

// stepRenew renews key's claim with the named token; the time of the
// renewal is kept as the mark "NAME renewed", replacing an earlier one.
func stepRenew(key, token string) dedupStep {
	return dedupStep{op: opRenew, key: key, name: token}
}

// lostClaim returns s, a Complete, Release or Renew, expected to find that
// its token no longer holds the claim.
func (s dedupStep) lostClaim() dedupStep {
	s.lost = true
	return s
}

func stepWait() dedupStep                 { return dedupStep{op: opWait} }
func stepUntilLive(mark string) dedupStep { return dedupStep{op: opUntilLive, name: mark} }
func stepUntilGone(mark string) dedupStep { return dedupStep{op: opUntilGone, name: mark} }

func (s dedupStep) String() string {
	switch s.op {
	case opClaim:
		return fmt.Sprintf("claim %q", s.key)
	case opComplete:
		return fmt.Sprintf("complete %q with token %s", s.key, s.name)
	case opRelease:
		return fmt.Sprintf("release %q with token %s", s.key, s.name)
	case opRenew:
		return fmt.Sprintf("renew %q with token %s", s.key, s.name)
	case opWait:
		return "wait one period"
	case opUntilLive:
		return "wait until just before the period from " + s.name + " ends"
	case opUntilGone:
		return "wait until just after the period from " + s.name + " ends"
	}
	return fmt.Sprintf("step %d", s.op)
}

// play runs steps in order and stops at the first that fails.
func (r *dedupRun) play(steps []dedupStep) error {
	for i, s := range steps {
		if err := r.step(s); err != nil {
			return fmt.Errorf("step %d, %v: %w", i+1, s, err)
		}
	}
	return nil
}

func (r *dedupRun) step(s dedupStep) error {
	switch s.op {
	case opClaim:
		return r.claim(s)
	case opComplete, opRelease, opRenew:
		token, err := r.token(s.name)
		if err != nil {
			return err
		}
		start := r.now()
		switch s.op {
		case opComplete:
			err = r.settled("Complete", r.d.Complete(r.ctx, s.key, token), s.lost)
			if err == nil && !s.lost {
				r.marks[s.name+" completed"] = span{start, r.now()}
			}
			return err
		case opRelease:
			return r.settled("Release", r.d.Release(r.ctx, s.key, token), s.lost)
		}
		if !r.renews {
			return errNotRenewer
		}
		err = r.settled("Renew", r.lr.Renew(r.ctx, s.key, token), s.lost)
		if err == nil && !s.lost {
			r.marks[s.name+" renewed"] = span{start, r.now()}
		}
		return err
	case opWait:
		r.sleep(r.period)
	case opUntilLive, opUntilGone:
		m, ok := r.marks[s.name]
		if !ok {
			return fmt.Errorf("no mark %q (a bug in the suite)", s.name)
		}
		if s.op == opUntilLive {
			r.sleepUntil(m.start.Add(r.period - r.margin))
		} else {
			r.sleepUntil(m.end.Add(r.period + r.margin))
		}
	default:
		return errors.New("unknown operation (a bug in the suite)")
	}
	return nil
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

func (r *dedupRun) claim(s dedupStep) error {
	start := r.now()
	token, res, err := r.d.Claim(r.ctx, s.key)
	end := r.now()
	if err != nil {
		return fmt.Errorf("error from Claim: %w", err)
	}
	if res != s.want {
		if res == tlwebhook.ClaimAcquired && s.live != "" && r.late(s.live, end) {
			return fmt.Errorf("%w: claimed, but answered after the period from %s ended", errTooSlow, s.live)
		}
		return fmt.Errorf("got %v, want %v", res, s.want)
	}
	if res != tlwebhook.ClaimAcquired {
		if token != "" {
			return fmt.Errorf("got %v with token %q, want no token", res, token)
		}
		return nil
	}
	if err := r.newToken(token); err != nil {
		return err
	}
	r.tokens[s.name] = token
	r.marks[s.name] = span{start, end}
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

func (r *dedupRun) token(name string) (string, error) {
	base, altered := strings.CutSuffix(name, "+x")
	token, ok := r.tokens[base]
	if !ok {
		return "", fmt.Errorf("no token %q (a bug in the suite)", base)
	}
	if altered {
		token += "x"
	}
	return token, nil
}

// dedupScenarios returns the scenarios of [TestDeduplicator].
func dedupScenarios() []dedupScenario {
	claim, dup, complete, release, renew := stepClaim, stepDup, stepComplete, stepRelease, stepRenew
	lost := dedupStep.lostClaim
	const (
		inProgress = tlwebhook.ClaimInProgress
		completed  = tlwebhook.ClaimDone
	)
	return []dedupScenario{
		{name: "first claim claims", steps: []dedupStep{
			claim("k", "t1"),
		}},
		{name: "keys are independent", steps: []dedupStep{
			claim("a", "t1"), claim("b", "t2"), dup("a", inProgress, ""), dup("b", inProgress, ""),
		}},
		{name: "duplicate while in progress", steps: []dedupStep{
			claim("k", "t1"), dup("k", inProgress, ""), dup("k", inProgress, ""),
		}},
		{name: "completed until the retention passes, then claimable", retention: short, steps: []dedupStep{
			claim("k", "t1"), complete("k", "t1"), dup("k", completed, "t1 completed"),
			stepUntilLive("t1 completed"), dup("k", completed, "t1 completed"),
			stepUntilGone("t1 completed"), claim("k", "t2"), dup("k", inProgress, ""),
		}},
		{name: "retention counts from the completion, not from the claim", retention: short, steps: []dedupStep{
			claim("k", "t1"), stepWait(), complete("k", "t1"),
			stepUntilLive("t1 completed"), dup("k", completed, "t1 completed"),
		}},
		{name: "release lets the retry claim", steps: []dedupStep{
			claim("k", "t1"), release("k", "t1"), claim("k", "t2"), dup("k", inProgress, ""),
		}},
		{name: "crash: a claim without completion is claimable after the lease", lease: short, steps: []dedupStep{
			claim("k", "t1"), dup("k", inProgress, "t1"),
			stepUntilLive("t1"), dup("k", inProgress, "t1"),
			stepUntilGone("t1"), claim("k", "t2"), dup("k", inProgress, "t2"),
		}},
		{name: "release with a stale token does nothing", lease: short, steps: []dedupStep{
			claim("k", "t1"), stepUntilGone("t1"), claim("k", "t2"),
			lost(release("k", "t1")), dup("k", inProgress, "t2"),
		}},
		{name: "complete with a stale token does nothing", lease: short, steps: []dedupStep{
			claim("k", "t1"), stepUntilGone("t1"), claim("k", "t2"),
			lost(complete("k", "t1")), dup("k", inProgress, "t2"),
			stepUntilGone("t2"), claim("k", "t3"),
		}},
		{name: "the current holder still completes after a stale release", lease: short, steps: []dedupStep{
			claim("k", "t1"), stepUntilGone("t1"), claim("k", "t2"),
			lost(release("k", "t1")), complete("k", "t2"), dup("k", completed, "t2"),
		}},
		{name: "complete after the lease passed does nothing", lease: short, steps: []dedupStep{
			claim("k", "t1"), stepUntilGone("t1"), lost(complete("k", "t1")), claim("k", "t2"),
		}},
		{name: "unknown tokens do nothing", steps: []dedupStep{
			claim("k", "t1"),
			lost(release("k", "never-issued")), lost(complete("k", "never-issued")),
			lost(release("k", "empty")), lost(complete("k", "empty")),
			lost(release("k", "t1+x")), lost(complete("k", "t1+x")),
			dup("k", inProgress, ""),
			complete("k", "t1"), dup("k", completed, ""),
		}},
		{name: "a token of another key does nothing", steps: []dedupStep{
			claim("a", "ta"), claim("b", "tb"),
			lost(complete("a", "tb")), lost(release("a", "tb")), dup("a", inProgress, ""),
			complete("a", "ta"), dup("a", completed, ""), dup("b", inProgress, ""),
		}},
		{name: "release after complete does nothing", steps: []dedupStep{
			claim("k", "t1"), complete("k", "t1"), lost(release("k", "t1")), dup("k", completed, ""),
		}},
		{name: "complete after release does nothing", steps: []dedupStep{
			claim("k", "t1"), release("k", "t1"), lost(complete("k", "t1")), claim("k", "t2"), dup("k", inProgress, ""),
		}},
		{name: "complete and release of an unknown key do nothing", steps: []dedupStep{
			lost(complete("k", "never-issued")), lost(release("k", "never-issued")), claim("k", "t1"),
		}},
		{name: "tokens are unique", run: uniqueTokens},
		{name: "concurrent claims of one key: exactly one claims", run: concurrentClaims},
		{name: "handlers run the callback once for concurrent copies of one message", run: handlerCopies(false)},
		{name: "handlers run the callback once for concurrent messages of one event", run: handlerCopies(true)},
		{name: "handlers run the callback again after a failure", run: handlerRetry},
		{name: "handlers run the callback once the lease of a crashed holder passes", lease: short, run: handlerAfterCrash},

		// The LeaseRenewer contract.
		{name: "renew: the claim lasts a lease from each renewal", lease: short, renewer: true, steps: []dedupStep{
			claim("k", "t1"),
			stepUntilLive("t1"), renew("k", "t1"),
			stepUntilLive("t1 renewed"), renew("k", "t1"),
			stepUntilGone("t1"), dup("k", inProgress, "t1 renewed"),
			stepUntilGone("t1 renewed"), claim("k", "t2"),
			lost(renew("k", "t1")), lost(complete("k", "t1")), dup("k", inProgress, "t2"),
			complete("k", "t2"), dup("k", completed, ""),
		}},
		{name: "renew: a renewed claim completes and releases", renewer: true, steps: []dedupStep{
			claim("a", "ta"), renew("a", "ta"), complete("a", "ta"), dup("a", completed, ""),
			claim("b", "tb"), renew("b", "tb"), release("b", "tb"), claim("b", "tb2"),
		}},
		{name: "renew with a stale token does nothing", lease: short, renewer: true, steps: []dedupStep{
			claim("k", "t1"), stepUntilGone("t1"), claim("k", "t2"),
			stepUntilLive("t2"), lost(renew("k", "t1")), dup("k", inProgress, "t2"),
			stepUntilGone("t2"), claim("k", "t3"),
		}},
		{name: "renew after the lease passed does nothing", lease: short, renewer: true, steps: []dedupStep{
			claim("k", "t1"), stepUntilGone("t1"), lost(renew("k", "t1")), claim("k", "t2"),
		}},
		{name: "renew with unknown tokens does nothing", lease: short, renewer: true, steps: []dedupStep{
			claim("k", "t1"), stepUntilLive("t1"),
			lost(renew("k", "never-issued")), lost(renew("k", "empty")), lost(renew("k", "t1+x")),
			claim("b", "tb"), lost(renew("k", "tb")),
			dup("k", inProgress, "t1"),
			stepUntilGone("t1"), claim("k", "t2"),
		}},
		{name: "renew after complete or release does nothing", renewer: true, steps: []dedupStep{
			claim("a", "ta"), complete("a", "ta"), lost(renew("a", "ta")), dup("a", completed, ""),
			claim("b", "tb"), release("b", "tb"), lost(renew("b", "tb")), claim("b", "tb2"),
		}},
		{name: "handlers keep the claim while the callback outlasts the lease", lease: short, renewer: true, run: handlerOutlastsLease},
		{name: "handlers log a claim lost by a stalled holder at error level", lease: short, renewer: true, run: handlerStalledHolder},
	}
}

// uniqueTokens claims one key again and again, releasing it each time, and
// 50 other keys: every token differs.
func uniqueTokens(r *dedupRun) error {
	for i := range 50 {
		for _, key := range []string{"k", "k" + strconv.Itoa(i)} {
			name := key + "#" + strconv.Itoa(i)
			if err := r.play([]dedupStep{stepClaim(key, name), stepRelease(key, name)}); err != nil {
				return fmt.Errorf("claim %d: %w", i+1, err)
			}
		}
	}
	return nil
}

// concurrentClaims has 50 goroutines, each with a Deduplicator of its own,
// claim one key at once, over several rounds: one claims it, the others
// see it in progress, only the winner's token completes it, and it does so
// through any of the Deduplicators.
func concurrentClaims(r *dedupRun) error {
	const (
		goroutines = 50
		rounds     = 10
	)
	ds := make([]tlwebhook.Deduplicator, goroutines)
	for i := range ds {
		if ds[i] = r.open(); ds[i] == nil {
			return errors.New("the open function of DeduplicatorSuite.New returned nil")
		}
	}
	check := func(d tlwebhook.Deduplicator, key string, want tlwebhook.ClaimResult) error {
		_, res, err := d.Claim(r.ctx, key)
		if err == nil && res != want {
			err = fmt.Errorf("got %v, want %v", res, want)
		}
		return err
	}
	for round := range rounds {
		key := "concurrent" + strconv.Itoa(round)
		var (
			start   = make(chan struct{})
			wg      sync.WaitGroup
			results [goroutines]tlwebhook.ClaimResult
			tokens  [goroutines]string
			errs    [goroutines]error
		)
		for g := range goroutines {
			wg.Go(func() {
				<-start
				tokens[g], results[g], errs[g] = ds[g].Claim(r.ctx, key)
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			return fmt.Errorf("round %d: errors from Claim: %w", round+1, err)
		}
		winner, count := -1, map[tlwebhook.ClaimResult]int{}
		for g, res := range results {
			count[res]++
			switch {
			case res == tlwebhook.ClaimAcquired:
				winner = g
			case tokens[g] != "":
				return fmt.Errorf("round %d: got %v with token %q, want no token", round+1, res, tokens[g])
			}
		}
		if count[tlwebhook.ClaimAcquired] != 1 || count[tlwebhook.ClaimInProgress] != goroutines-1 {
			return fmt.Errorf("round %d: %d goroutines claimed the key and %d saw it in progress (of %d), want 1 and %d",
				round+1, count[tlwebhook.ClaimAcquired], count[tlwebhook.ClaimInProgress], goroutines, goroutines-1)
		}
		if err := r.newToken(tokens[winner]); err != nil {
			return fmt.Errorf("round %d: %w", round+1, err)
		}
		for g, d := range ds {
			if g == winner {
				continue
			}
			if err := r.settled("Complete", d.Complete(r.ctx, key, tokens[winner]+"x"), true); err != nil {
				return fmt.Errorf("round %d: %w", round+1, err)
			}
		}
		if err := check(ds[0], key, tlwebhook.ClaimInProgress); err != nil {
			return fmt.Errorf("round %d: after completions with an altered token: %w", round+1, err)
		}
		if err := ds[(winner+1)%goroutines].Complete(r.ctx, key, tokens[winner]); err != nil {
			return fmt.Errorf("round %d: error from Complete: %w", round+1, err)
		}
		if err := check(ds[winner], key, tlwebhook.ClaimDone); err != nil {
			return fmt.Errorf("round %d: after the winner's token completed it through another Deduplicator: %w", round+1, err)
		}
	}
	return nil
}

// A replicaSet is n Handlers, as n processes of one service would be, each
// with a Deduplicator opened on the scenario's store, all running one
// sandbox callback; and the delivery they receive: a sample sandbox event,
// signed with a fresh secret.
type replicaSet struct {
	hs      []*tlwebhook.Handler
	signer  *Signer
	body    []byte
	eventID string // the key the Handlers deduplicate body on
}

func (r *dedupRun) replicas(n int, fn func(context.Context, *tlwebhook.SandboxEvent) error) (*replicaSet, error) {
	return r.replicasWith(n, replicaSetup{}, fn)
}

// replicaSetup adjusts the Handlers of a replicaSet.
type replicaSetup struct {
	// wrap, if set, returns the Deduplicator Handler i uses in place of d.
	wrap func(i int, d tlwebhook.Deduplicator) tlwebhook.Deduplicator
	// logger, if set, is the logger of Handler i; the default discards.
	logger func(i int) *slog.Logger
}

func (r *dedupRun) replicasWith(n int, setup replicaSetup, fn func(context.Context, *tlwebhook.SandboxEvent) error) (*replicaSet, error) {
	rs := &replicaSet{body: Sample(tlwebhook.EventTypeSandboxCreated)}
	ev, err := tlwebhook.ParseEvent(rs.body)
	if err != nil {
		return nil, err
	}
	sb, ok := ev.(*tlwebhook.SandboxEvent)
	if !ok || sb.EventID == "" {
		return nil, fmt.Errorf("the sample sandbox payload parsed as %T without an event_id", ev)
	}
	rs.eventID = sb.EventID
	secret := NewSecret()
	if rs.signer, err = NewSigner(secret); err != nil {
		return nil, err
	}
	for i := range n {
		d := r.open()
		if d == nil {
			return nil, errors.New("the open function of DeduplicatorSuite.New returned nil")
		}
		if setup.wrap != nil {
			d = setup.wrap(i, d)
		}
		logger := slog.New(slog.DiscardHandler)
		if setup.logger != nil {
			logger = setup.logger(i)
		}
		h, err := tlwebhook.NewHandler(secret,
			tlwebhook.WithDeduplicator(d),
			tlwebhook.WithLogger(logger))
		if err != nil {
			return nil, err
		}
		h.OnSandboxEvent(fn)
		rs.hs = append(rs.hs, h)
	}
	return rs, nil
}

// request returns a request delivering the sample as message msgID, signed
// now.
func (rs *replicaSet) request(msgID string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/tensorlake", bytes.NewReader(rs.body))
	req.Header.Set("Content-Type", "application/json")
	for name, values := range rs.signer.HeaderFor(msgID, time.Now(), rs.body) {
		req.Header[name] = values
	}
	return req
}

// serve has Handler i answer req and returns the status.
func (rs *replicaSet) serve(i int, req *http.Request) int {
	rec := httptest.NewRecorder()
	rs.hs[i%len(rs.hs)].ServeHTTP(rec, req)
	return rec.Code
}

// deliver has Handler i answer a delivery of message msgID.
func (rs *replicaSet) deliver(i int, msgID string) int { return rs.serve(i, rs.request(msgID)) }

// handlerCopies sends 50 concurrent copies of one delivery, spread over 8
// Handlers: the callback runs once. It holds until every other copy has
// been answered, so all of them meet the claim in progress and must get
// 409; copies sent after it finished get 2xx and run nothing. With
// sameEvent, the copies are distinct messages of one event, which the
// Handler deduplicates on its event_id.
func handlerCopies(sameEvent bool) func(*dedupRun) error {
	return func(r *dedupRun) error {
		const (
			handlers = 8
			copies   = 50
		)
		msgID := NewMessageID()
		id := func(int) string { return msgID }
		if sameEvent {
			id = func(i int) string { return msgID + "_" + strconv.Itoa(i) }
		}
		var runs, conflicts atomic.Int32
		othersAnswered := make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(othersAnswered) }) }
		defer release()
		rs, err := r.replicas(handlers, func(context.Context, *tlwebhook.SandboxEvent) error {
			if runs.Add(1) > 1 {
				release() // a second run: no copy needs holding off any longer
			}
			select {
			case <-othersAnswered:
			case <-time.After(5 * time.Second):
			}
			return nil
		})
		if err != nil {
			return err
		}

		statuses := make([]int, copies)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range copies {
			req := rs.request(id(i))
			wg.Go(func() {
				<-start
				statuses[i] = rs.serve(i, req)
				if statuses[i] == http.StatusConflict && conflicts.Add(1) == copies-1 {
					release()
				}
			})
		}
		close(start)
		wg.Wait()
		release()

		count := map[int]int{}
		for _, s := range statuses {
			count[s]++
		}
		if n := runs.Load(); n != 1 || count[http.StatusNoContent] != 1 || count[http.StatusConflict] != copies-1 {
			return fmt.Errorf("%d concurrent copies over %d handlers ran the callback %d times and were answered %v, want once, 204 once and 409 %d times",
				copies, handlers, n, count, copies-1)
		}
		for i := range handlers {
			if status := rs.deliver(i, id(copies+i)); status != http.StatusNoContent {
				return fmt.Errorf("a copy sent to handler %d after the callback finished got %d, want 204", i, status)
			}
		}
		if n := runs.Load(); n != 1 {
			return fmt.Errorf("copies sent after the callback finished ran it again: %d runs, want 1", n)
		}
		return nil
	}
}

// handlerRetry: a callback that fails on one replica releases its claim,
// so the retry, reaching another replica, runs it again; after a success,
// copies run nothing.
func handlerRetry(r *dedupRun) error {
	var runs atomic.Int32
	rs, err := r.replicas(3, func(context.Context, *tlwebhook.SandboxEvent) error {
		if runs.Add(1) == 1 {
			return errors.New("downstream unavailable")
		}
		return nil
	})
	if err != nil {
		return err
	}
	msgID := NewMessageID()
	for i, want := range []struct {
		status int
		runs   int32
	}{
		{http.StatusInternalServerError, 1},
		{http.StatusNoContent, 2},
		{http.StatusNoContent, 2},
	} {
		status := rs.deliver(i, msgID)
		if n := runs.Load(); status != want.status || n != want.runs {
			return fmt.Errorf("attempt %d got %d with %d callback runs in all, want %d with %d", i+1, status, n, want.status, want.runs)
		}
	}
	return nil
}

// handlerAfterCrash: a replica that claimed the message and crashed leaves
// its claim behind; retries get 409 until the lease passes, then run. The
// crashed replica, were it to wake up, cannot release the new claim.
func handlerAfterCrash(r *dedupRun) error {
	var runs atomic.Int32
	var holding atomic.Bool
	hold := make(chan struct{})
	var once sync.Once
	finish := func() { once.Do(func() { close(hold) }) }
	defer finish()
	rs, err := r.replicas(2, func(context.Context, *tlwebhook.SandboxEvent) error {
		if runs.Add(1) == 1 && holding.Load() {
			<-hold
		}
		return nil
	})
	if err != nil {
		return err
	}
	crashed := r.open()
	if crashed == nil {
		return errors.New("the open function of DeduplicatorSuite.New returned nil")
	}
	start := r.now()
	staleToken, res, err := crashed.Claim(r.ctx, rs.eventID)
	if err != nil || res != tlwebhook.ClaimAcquired {
		return fmt.Errorf("claim of the replica that crashes: got %v, %v; want claimed", res, err)
	}
	r.marks["crashed"] = span{start, r.now()}
	msgID := NewMessageID()

	status := rs.deliver(0, msgID)
	if status != http.StatusConflict || runs.Load() != 0 {
		if status == http.StatusNoContent && r.late("crashed", r.now()) {
			return fmt.Errorf("%w: the retry within the lease was answered after it", errTooSlow)
		}
		return fmt.Errorf("a retry within the lease of the crashed claim got %d and ran the callback %d times, want 409 and none", status, runs.Load())
	}

	r.sleepUntil(r.marks["crashed"].end.Add(r.period + r.margin))
	holding.Store(true)
	r.marks["retry"] = span{start: r.now()}
	done := make(chan int, 1)
	go func() { done <- rs.deliver(1, msgID) }()
	for deadline := time.Now().Add(5 * time.Second); runs.Load() == 0; {
		select {
		case status := <-done:
			return fmt.Errorf("the retry after the lease got %d without running the callback", status)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the retry after the lease did not run the callback within 5s")
		}
	}
	if err := r.settled("Release", crashed.Release(r.ctx, rs.eventID, staleToken), true); err != nil {
		return fmt.Errorf("the crashed replica's release: %w", err)
	}
	status = rs.deliver(0, msgID)
	if status != http.StatusConflict {
		if status == http.StatusNoContent && runs.Load() == 2 && r.late("retry", r.now()) {
			return fmt.Errorf("%w: the copy during the new run was answered after its lease", errTooSlow)
		}
		return fmt.Errorf("a copy while the retry runs, after the crashed replica released its stale token, got %d (%d runs), want 409", status, runs.Load())
	}
	finish()
	if status := <-done; status != http.StatusNoContent {
		return fmt.Errorf("the retry after the lease got %d, want 204", status)
	}
	if n := runs.Load(); n != 1 {
		return fmt.Errorf("callback runs: %d, want 1", n)
	}
	return nil
}

// renewWatch is a LeaseRenewer that counts the renewals a Handler asks for
// and can hold them back, as a stalled process would not send them.
type renewWatch struct {
	tlwebhook.Deduplicator
	lr     tlwebhook.LeaseRenewer
	calls  atomic.Int32
	stall  atomic.Bool   // hold renewals back until resume is closed
	resume chan struct{} // closed to let held renewals through
}

func newRenewWatch(d tlwebhook.Deduplicator) *renewWatch {
	lr, _ := d.(tlwebhook.LeaseRenewer) // the scenarios that use it run only on renewers
	return &renewWatch{Deduplicator: d, lr: lr, resume: make(chan struct{})}
}

func (w *renewWatch) Lease() time.Duration { return w.lr.Lease() }

func (w *renewWatch) Renew(ctx context.Context, key, token string) error {
	w.calls.Add(1)
	if w.stall.Load() {
		select {
		case <-w.resume:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return w.lr.Renew(ctx, key, token)
}

// waitFor polls cond every millisecond, for at most d of real time.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// handlerOutlastsLease: a callback runs on past its claim's lease; the
// Handler renews the claim meanwhile, so a copy sent after the lease would
// have passed meets the claim in progress (409) and the callback runs once.
// Time passes a quarter of the lease at a time, each step waiting for the
// Handler to renew, so that a fake clock never jumps past a renewal.
func handlerOutlastsLease(r *dedupRun) error {
	var runs atomic.Int32
	finish := make(chan struct{})
	var once sync.Once
	done := func() { once.Do(func() { close(finish) }) }
	defer done()
	var watch *renewWatch
	rs, err := r.replicasWith(2, replicaSetup{wrap: func(i int, d tlwebhook.Deduplicator) tlwebhook.Deduplicator {
		if i == 0 {
			watch = newRenewWatch(d)
			return watch
		}
		return d
	}}, func(context.Context, *tlwebhook.SandboxEvent) error {
		if runs.Add(1) == 1 {
			select {
			case <-finish:
			case <-time.After(time.Minute):
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	msgID := NewMessageID()
	first := make(chan int, 1)
	go func() { first <- rs.deliver(0, msgID) }()
	if !waitFor(5*time.Second, func() bool { return runs.Load() > 0 }) {
		return errors.New("the first delivery did not run the callback within 5s")
	}
	claimed := r.now() // the claim was made before this
	for r.now().Before(claimed.Add(r.period + r.margin)) {
		calls := watch.calls.Load()
		r.sleep(r.period / 4)
		if !waitFor(5*time.Second+r.period, func() bool { return watch.calls.Load() > calls }) {
			return fmt.Errorf("the Handler did not renew the claim while its callback ran (lease %v, so every %v)", r.period, r.period/3)
		}
	}
	status := rs.deliver(1, msgID)
	if n := runs.Load(); status != http.StatusConflict || n != 1 {
		return fmt.Errorf("a copy sent once the lease had passed, while the callback still ran, got %d and the callback ran %d times; want 409 and once: the claim was not kept for as long as the callback ran", status, n)
	}
	done()
	if status := <-first; status != http.StatusNoContent {
		return fmt.Errorf("the delivery whose callback outlasted the lease got %d, want 204", status)
	}
	if status := rs.deliver(1, msgID); status != http.StatusNoContent {
		return fmt.Errorf("a copy after the callback finished got %d, want 204", status)
	}
	if n := runs.Load(); n != 1 {
		return fmt.Errorf("callback runs: %d, want 1", n)
	}
	return nil
}

// lockedBuffer is a bytes.Buffer safe for concurrent use, for logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// handlerStalledHolder: the holder of a claim stalls (its renewals held
// back, as in a paused process) past its lease, so a copy claims the key
// and runs. When the holder's callback returns, its Handler cannot complete
// the lost claim, and must say so in an error-level log record naming
// ErrClaimLost, never silently.
func handlerStalledHolder(r *dedupRun) error {
	var runs atomic.Int32
	finish := make(chan struct{})
	var once sync.Once
	done := func() { once.Do(func() { close(finish) }) }
	defer done()
	var watch *renewWatch
	var logs lockedBuffer
	rs, err := r.replicasWith(2, replicaSetup{
		wrap: func(i int, d tlwebhook.Deduplicator) tlwebhook.Deduplicator {
			if i == 0 {
				watch = newRenewWatch(d)
				watch.stall.Store(true)
				return watch
			}
			return d
		},
		logger: func(i int) *slog.Logger {
			if i == 0 {
				return slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			return slog.New(slog.DiscardHandler)
		},
	}, func(context.Context, *tlwebhook.SandboxEvent) error {
		if runs.Add(1) == 1 {
			select {
			case <-finish:
			case <-time.After(time.Minute):
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer close(watch.resume)
	msgID := NewMessageID()
	first := make(chan int, 1)
	go func() { first <- rs.deliver(0, msgID) }()
	if !waitFor(5*time.Second, func() bool { return runs.Load() > 0 }) {
		return errors.New("the first delivery did not run the callback within 5s")
	}
	claimed := r.now()
	r.sleepUntil(claimed.Add(r.period + r.margin))
	if status := rs.deliver(1, msgID); status != http.StatusNoContent || runs.Load() != 2 {
		return fmt.Errorf("a copy sent after the stalled holder's lease passed got %d with %d callback runs in all, want 204 and 2: the claim outlived its lease without renewal", status, runs.Load())
	}
	done()
	<-first
	lost := tlwebhook.ErrClaimLost.Error()
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, lost) {
			return nil
		}
	}
	return fmt.Errorf("the stalled holder's Handler logged no error-level record naming %q; its logs:\n%s", lost, logs.String())
}
