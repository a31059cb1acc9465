package tlwebhooktest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/tlwebhook/tlwebhook"
)

// Claim answers other than ClaimAcquired, as the scenarios expect them.
const (
	inProgress = tlwebhook.ClaimInProgress
	completed  = tlwebhook.ClaimDone
)

// none is the zero span: no period is at stake.
var none span

// claimScenarios are the scenarios of the Deduplicator contract: claims,
// completions, releases, leases and retentions, and tokens.
func claimScenarios() []dedupScenario {
	return []dedupScenario{
		{name: "first claim claims", run: func(r *dedupRun) {
			r.claim("k")
		}},
		{name: "keys are independent", run: func(r *dedupRun) {
			r.claim("a")
			r.claim("b")
			r.dup("a", inProgress, none)
			r.dup("b", inProgress, none)
		}},
		{name: "duplicate while in progress", run: func(r *dedupRun) {
			r.claim("k")
			r.dup("k", inProgress, none)
			r.dup("k", inProgress, none)
		}},
		{name: "completed until the retention passes, then claimable", retention: short, run: func(r *dedupRun) {
			done := r.complete(r.claim("k"))
			r.dup("k", completed, done)
			r.untilLive(done)
			r.dup("k", completed, done)
			r.untilGone(done)
			r.claim("k")
			r.dup("k", inProgress, none)
		}},
		{name: "retention counts from the completion, not from the claim", retention: short, run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.wait()
			done := r.complete(t1)
			r.untilLive(done)
			r.dup("k", completed, done)
		}},
		{name: "release lets the retry claim", run: func(r *dedupRun) {
			r.release(r.claim("k"))
			r.claim("k")
			r.dup("k", inProgress, none)
		}},
		{name: "crash: a claim without completion is claimable after the lease", lease: short, run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.dup("k", inProgress, t1.at)
			r.untilLive(t1.at)
			r.dup("k", inProgress, t1.at)
			r.untilGone(t1.at)
			t2 := r.claim("k")
			r.dup("k", inProgress, t2.at)
		}},
		{name: "release with a stale token does nothing", lease: short, run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilGone(t1.at)
			t2 := r.claim("k")
			r.releaseLost(t1)
			r.dup("k", inProgress, t2.at)
		}},
		{name: "complete with a stale token does nothing", lease: short, run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilGone(t1.at)
			t2 := r.claim("k")
			r.completeLost(t1)
			r.dup("k", inProgress, t2.at)
			r.untilGone(t2.at)
			r.claim("k")
		}},
		{name: "the current holder still completes after a stale release", lease: short, run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilGone(t1.at)
			t2 := r.claim("k")
			r.releaseLost(t1)
			r.complete(t2)
			r.dup("k", completed, t2.at)
		}},
		{name: "complete after the lease passed does nothing", lease: short, run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilGone(t1.at)
			r.completeLost(t1)
			r.claim("k")
		}},
		{name: "unknown tokens do nothing", run: func(r *dedupRun) {
			t1 := r.claim("k")
			for _, h := range []held{forged("k", neverIssued), forged("k", emptyToken), t1.altered()} {
				r.releaseLost(h)
				r.completeLost(h)
			}
			r.dup("k", inProgress, none)
			r.complete(t1)
			r.dup("k", completed, none)
		}},
		{name: "a token of another key does nothing", run: func(r *dedupRun) {
			ta := r.claim("a")
			tb := r.claim("b")
			r.completeLost(tb.on("a"))
			r.releaseLost(tb.on("a"))
			r.dup("a", inProgress, none)
			r.complete(ta)
			r.dup("a", completed, none)
			r.dup("b", inProgress, none)
		}},
		{name: "release after complete does nothing", run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.complete(t1)
			r.releaseLost(t1)
			r.dup("k", completed, none)
		}},
		{name: "complete after release does nothing", run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.release(t1)
			r.completeLost(t1)
			r.claim("k")
			r.dup("k", inProgress, none)
		}},
		{name: "complete and release of an unknown key do nothing", run: func(r *dedupRun) {
			r.completeLost(forged("k", neverIssued))
			r.releaseLost(forged("k", neverIssued))
			r.claim("k")
		}},
		{name: "tokens are unique", run: uniqueTokens},
		{name: "concurrent claims of one key: exactly one claims", run: checked(concurrentClaims)},
	}
}

// uniqueTokens claims one key again and again, releasing it each time, and
// 50 other keys: every token differs.
func uniqueTokens(r *dedupRun) {
	for i := range 50 {
		for _, key := range []string{"k", "k" + strconv.Itoa(i)} {
			r.release(r.claim(key))
		}
	}
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
