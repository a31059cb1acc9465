package tlwebhooktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// take about three Periods in all; one whose check could not be made in
// time, because the machine was too slow, is played again on a new store,
// up to three times in all, then skipped with a message. A
// suite without New, with only one of Now and Sleep, or with Period or
// Margin out of range fails t at once.
//
// A deduplicator kept in memory, with an injectable clock, is checked in
// fake time, with a [FakeClock]:
//
//	func TestMyDeduplicator(t *testing.T) {
//		clock := tlwebhooktest.NewFakeClock(time.Time{})
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
			for try := 1; errors.Is(err, errTooSlow) && try < tooSlowTries; try++ {
				t.Logf("try %d: %v; playing the scenario again", try, err)
				err = cfg.run(t, sc)
			}
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
		issued: map[string]bool{},
		leases: map[string]span{},

		shortLease: sc.lease == short,
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
	sc.run(r)
	return r.err
}

// errTooSlow marks a check that real time overtook: its result was
// expected only if it came before a period ended, and it came after.
var errTooSlow = errors.New("too slow to observe the period; skipped")

// tooSlowTries is how many times a scenario is played while the machine is
// too slow for it.
const tooSlowTries = 3

// errNotRenewer marks a scenario of the LeaseRenewer contract played on a
// deduplicator that does not implement it.
var errNotRenewer = errors.New("the Deduplicator is not a tlwebhook.LeaseRenewer; scenario skipped")

// dedupPeriod is how long a scenario's lease or retention is.
type dedupPeriod int

const (
	long  dedupPeriod = iota // an hour, never reached
	short                    // the suite's Period, waited out
)

// A dedupScenario is one check of the contract: a function that plays
// operations on a dedupRun, which records the first failure.
type dedupScenario struct {
	name             string
	lease, retention dedupPeriod
	renewer          bool // a scenario of the LeaseRenewer contract
	run              func(*dedupRun)
}

// checked adapts a scenario written as a function returning its failure.
func checked(f func(*dedupRun) error) func(*dedupRun) {
	return func(r *dedupRun) {
		if err := f(r); err != nil {
			r.fail(err)
		}
	}
}

// dedupScenarios returns the scenarios of [TestDeduplicator]: those of the
// Deduplicator contract (dedup_scenarios.go), the Handlers' (dedup_handlers.go)
// and those of the LeaseRenewer contract (dedup_renew.go), in that order.
func dedupScenarios() []dedupScenario {
	return slices.Concat(claimScenarios(), handlerScenarios(), renewScenarios())
}
