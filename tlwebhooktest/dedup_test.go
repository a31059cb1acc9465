package tlwebhooktest

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
)

// TestDeduplicatorMemoryRealTime runs the suite against the in-memory
// deduplicator in real time, as it runs against a networked store; the
// root module's tests run it in fake time.
func TestDeduplicatorMemoryRealTime(t *testing.T) {
	TestDeduplicator(t, DeduplicatorSuite{
		New: func(t *testing.T, lease, retention time.Duration) func() tlwebhook.Deduplicator {
			d, err := tlwebhook.NewMemoryDeduplicator(tlwebhook.WithLease(lease), tlwebhook.WithRetention(retention))
			require.NoError(t, err)
			return func() tlwebhook.Deduplicator { return d }
		},
	})
}

// A toyBugCase pairs a bug with the scenarios that must catch it.
type toyBugCase struct {
	name    string
	bugs    toyBugs
	failing []string // exactly these scenarios fail
	some    bool     // the bug shows by chance: at least one of failing fails, no other
	skipped []string // exactly these scenarios are skipped
}

// inProgressScenarios are the scenarios that claim a key claimed and live,
// and expect ClaimInProgress with no token.
var inProgressScenarios = []string{
	"keys are independent",
	"duplicate while in progress",
	"completed until the retention passes, then claimable",
	"release lets the retry claim",
	"crash: a claim without completion is claimable after the lease",
	"release with a stale token does nothing",
	"complete with a stale token does nothing",
	"unknown tokens do nothing",
	"a token of another key does nothing",
	"complete after release does nothing",
	"concurrent claims of one key: exactly one claims",
}

// renewerScenarios are the scenarios of the LeaseRenewer contract,
// skipped for a deduplicator that is not one.
var renewerScenarios = []string{
	"renew: the claim lasts a lease from each renewal",
	"renew: a renewed claim completes and releases",
	"renew with a stale token does nothing",
	"renew after the lease passed does nothing",
	"renew with unknown tokens does nothing",
	"renew after complete or release does nothing",
	"handlers keep the claim while the callback outlasts the lease",
	"handlers log a claim lost by a stalled holder at error level",
}

// renewInProgressScenarios are the scenarios of the LeaseRenewer contract
// that claim a key claimed and live, and expect ClaimInProgress.
var renewInProgressScenarios = []string{
	"renew: the claim lasts a lease from each renewal",
	"renew with a stale token does nothing",
	"renew with unknown tokens does nothing",
}

var toyBugCases = []toyBugCase{
	{name: "none"},
	{name: "Release ignores the token", bugs: toyBugs{releaseIgnoresToken: true}, failing: []string{
		"release with a stale token does nothing",
		"the current holder still completes after a stale release",
		"unknown tokens do nothing",
		"a token of another key does nothing",
		"release after complete does nothing",
		"handlers run the callback once the lease of a crashed holder passes",
	}},
	{name: "Complete ignores the token", bugs: toyBugs{completeIgnoresToken: true}, failing: []string{
		"complete with a stale token does nothing",
		"complete after the lease passed does nothing",
		"unknown tokens do nothing",
		"a token of another key does nothing",
		"complete after release does nothing",
		"complete and release of an unknown key do nothing",
		"concurrent claims of one key: exactly one claims",
		"renew: the claim lasts a lease from each renewal",
	}},
	{name: "never in progress", bugs: toyBugs{neverInProgress: true}, failing: slices.Concat([]string{
		"handlers run the callback once for concurrent copies of one message",
		"handlers run the callback once for concurrent messages of one event",
		"handlers run the callback once the lease of a crashed holder passes",
		"handlers keep the claim while the callback outlasts the lease",
	}, inProgressScenarios, renewInProgressScenarios)},
	{name: "the lease never ends", bugs: toyBugs{leaseNeverEnds: true}, failing: []string{
		"crash: a claim without completion is claimable after the lease",
		"release with a stale token does nothing",
		"complete with a stale token does nothing",
		"the current holder still completes after a stale release",
		"complete after the lease passed does nothing",
		"handlers run the callback once the lease of a crashed holder passes",
		// A renewal sets a lease that ends: the scenario that renews passes.
		"renew with a stale token does nothing",
		"renew after the lease passed does nothing",
		"renew with unknown tokens does nothing",
		"handlers log a claim lost by a stalled holder at error level",
	}},
	{name: "retention from the claim", bugs: toyBugs{retentionFromClaim: true}, failing: []string{
		"retention counts from the completion, not from the claim",
	}},
	{name: "one token for all claims", bugs: toyBugs{sameToken: true}, failing: []string{
		"keys are independent",
		"completed until the retention passes, then claimable",
		"release lets the retry claim",
		"crash: a claim without completion is claimable after the lease",
		"release with a stale token does nothing",
		"complete with a stale token does nothing",
		"the current holder still completes after a stale release",
		"complete after the lease passed does nothing",
		"a token of another key does nothing",
		"complete after release does nothing",
		"tokens are unique",
		"concurrent claims of one key: exactly one claims",
		"handlers run the callback once the lease of a crashed holder passes",
		"renew: the claim lasts a lease from each renewal",
		"renew: a renewed claim completes and releases",
		"renew with a stale token does nothing",
		"renew after the lease passed does nothing",
		"renew with unknown tokens does nothing",
		"renew after complete or release does nothing",
	}},
	{name: "a token with ClaimInProgress", bugs: toyBugs{tokenWhenInProgress: true}, failing: slices.Concat(inProgressScenarios, renewInProgressScenarios)},
	{name: "check then set", bugs: toyBugs{checkThenSet: true}, some: true, failing: []string{
		"concurrent claims of one key: exactly one claims",
		"handlers run the callback once for concurrent copies of one message",
		"handlers run the callback once for concurrent messages of one event",
	}},
	{name: "silent loss", bugs: toyBugs{silentLoss: true}, failing: []string{
		"release with a stale token does nothing",
		"complete with a stale token does nothing",
		"the current holder still completes after a stale release",
		"complete after the lease passed does nothing",
		"unknown tokens do nothing",
		"a token of another key does nothing",
		"release after complete does nothing",
		"complete after release does nothing",
		"complete and release of an unknown key do nothing",
		"concurrent claims of one key: exactly one claims",
		"handlers run the callback once the lease of a crashed holder passes",
		"renew: the claim lasts a lease from each renewal",
		"renew with a stale token does nothing",
		"renew after the lease passed does nothing",
		"renew with unknown tokens does nothing",
		"renew after complete or release does nothing",
		"handlers log a claim lost by a stalled holder at error level",
	}},
	{name: "Renew ignores the token", bugs: toyBugs{renewIgnoresToken: true}, failing: []string{
		"renew with a stale token does nothing",
		"renew after the lease passed does nothing",
		"renew with unknown tokens does nothing",
	}},
	{name: "Renew never extends", bugs: toyBugs{renewNeverExtends: true}, failing: []string{
		"renew: the claim lasts a lease from each renewal",
		"handlers keep the claim while the callback outlasts the lease",
	}},
	{name: "Renew counts from the claim", bugs: toyBugs{renewFromClaim: true}, failing: []string{
		"renew: the claim lasts a lease from each renewal",
		"handlers keep the claim while the callback outlasts the lease",
	}},
	{name: "Lease misreported", bugs: toyBugs{wrongLease: true}, failing: renewerScenarios},
	// Not a LeaseRenewer, with losses reported as nil: the scenarios of the
	// LeaseRenewer are skipped, and the others pass.
	{name: "not a LeaseRenewer", bugs: toyBugs{notRenewer: true}, skipped: renewerScenarios},
}

// TestDeduplicatorCatchesBugs plays every scenario against toy
// deduplicators, each with one bug, and checks which scenarios fail: the
// suite can fail, and each clause of the contract has a scenario that
// catches its breach. Without bugs, every scenario passes, so the failures
// come from the bugs.
func TestDeduplicatorCatchesBugs(t *testing.T) {
	for _, tt := range toyBugCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := toySuite(tt.bugs).config()
			require.NoError(t, err)
			var failing, skipped []string
			for _, sc := range dedupScenarios() {
				err := cfg.run(t, sc)
				require.NotErrorIs(t, err, errTooSlow, "%s: fake time is never too slow", sc.name)
				if errors.Is(err, errNotRenewer) {
					skipped = append(skipped, sc.name)
					continue
				}
				if err != nil {
					t.Logf("%s: %v", sc.name, err)
					failing = append(failing, sc.name)
				}
			}
			assert.ElementsMatch(t, tt.skipped, skipped, "skipped")
			if tt.some {
				assert.NotEmpty(t, failing)
				assert.Subset(t, tt.failing, failing)
				return
			}
			assert.ElementsMatch(t, tt.failing, failing)
		})
	}
}

// TestDeduplicatorReportsFailures runs TestDeduplicator itself, in a child
// process of this test binary, against a correct toy and a buggy one: the
// test passes, or fails naming the scenarios that caught the bug.
func TestDeduplicatorReportsFailures(t *testing.T) {
	tests := []struct {
		bug      string
		wantFail []string // subtests expected to fail; none: the run passes
		wantPass []string
	}{
		{"none", nil, []string{"first_claim_claims", "release_with_a_stale_token_does_nothing"}},
		{"Release ignores the token",
			[]string{"release_with_a_stale_token_does_nothing", "unknown_tokens_do_nothing"},
			[]string{"first_claim_claims", "complete_with_a_stale_token_does_nothing"}},
	}
	for _, tt := range tests {
		t.Run(tt.bug, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestDeduplicatorHelperProcess$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "TLWEBHOOKTEST_TOY_BUG="+tt.bug)
			out, err := cmd.CombinedOutput()
			if tt.wantFail == nil {
				require.NoError(t, err, "%s", out)
			} else {
				var exit *exec.ExitError
				require.ErrorAs(t, err, &exit, "%s", out)
				assert.Contains(t, string(out), "got acquired, want in-progress")
			}
			for _, name := range tt.wantFail {
				assert.Contains(t, string(out), "--- FAIL: TestDeduplicatorHelperProcess/"+name+" ")
			}
			for _, name := range tt.wantPass {
				assert.Contains(t, string(out), "--- PASS: TestDeduplicatorHelperProcess/"+name+" ")
			}
		})
	}
}

// TestDeduplicatorHelperProcess is the child process of
// TestDeduplicatorReportsFailures.
func TestDeduplicatorHelperProcess(t *testing.T) {
	bug := os.Getenv("TLWEBHOOKTEST_TOY_BUG")
	if bug == "" {
		t.Skip("run by TestDeduplicatorReportsFailures")
	}
	i := slices.IndexFunc(toyBugCases, func(c toyBugCase) bool { return c.name == bug })
	require.GreaterOrEqual(t, i, 0, "unknown bug %q", bug)
	TestDeduplicator(t, toySuite(toyBugCases[i].bugs))
}

// TestDeduplicatorTooSlow: a claim expected to find the key held, or a
// renewal or completion expected to find its claim, but answered after
// the period ended is skipped, not failed; one answered within the period
// that finds the key gone fails.
func TestDeduplicatorTooSlow(t *testing.T) {
	tests := []struct {
		name    string
		lease   time.Duration // of the deduplicator; the suite's period is 1s
		run     func(r *dedupRun)
		tooSlow bool
	}{
		{"answered after the period", time.Second, func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilGone(t1.at)
			r.dup("k", tlwebhook.ClaimInProgress, t1.at)
		}, true},
		{"answered within the period, lease too short", 100 * time.Millisecond, func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilLive(t1.at)
			r.dup("k", tlwebhook.ClaimInProgress, t1.at)
		}, false},
		{"answered after the period, wrong result", time.Second, func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilGone(t1.at)
			r.dup("k", tlwebhook.ClaimDone, none)
		}, false},
		{"renewal answered after the lease", time.Second, func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilGone(t1.at)
			r.renew(t1)
		}, true},
		{"renewal answered within the lease, lease too short", 100 * time.Millisecond, func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilLive(t1.at)
			r.renew(t1)
		}, false},
		{"completion answered after a renewed lease", time.Second, func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilLive(t1.at)
			renewed := r.renew(t1)
			r.untilGone(renewed)
			r.complete(t1)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := NewFakeClock(time.Time{})
			cfg, err := DeduplicatorSuite{
				New: func(_ *testing.T, _, retention time.Duration) func() tlwebhook.Deduplicator {
					d := &toyDedup{lease: tt.lease, retention: retention, now: clock.Now, entries: map[string]toyEntry{}}
					return func() tlwebhook.Deduplicator { return d }
				},
				Now:    clock.Now,
				Sleep:  clock.Advance,
				Period: time.Second,
			}.config()
			require.NoError(t, err)
			err = cfg.run(t, dedupScenario{name: tt.name, lease: short, run: tt.run})
			require.Error(t, err)
			assert.Equal(t, tt.tooSlow, errors.Is(err, errTooSlow), "%v", err)
		})
	}
}

func TestDeduplicatorSuiteConfig(t *testing.T) {
	newToy := toySuite(toyBugs{}).New
	tests := []struct {
		name     string
		suite    DeduplicatorSuite
		err      string // "": valid
		period   time.Duration
		margin   time.Duration
		parallel bool
	}{
		{name: "real time defaults", suite: DeduplicatorSuite{New: newToy}, period: 200 * time.Millisecond, margin: 100 * time.Millisecond, parallel: true},
		{name: "fake time defaults", suite: DeduplicatorSuite{New: newToy, Now: time.Now, Sleep: time.Sleep}, period: 200 * time.Millisecond, margin: time.Nanosecond},
		{name: "margin of half the period", suite: DeduplicatorSuite{New: newToy, Period: time.Second, Margin: 500 * time.Millisecond}, period: time.Second, margin: 500 * time.Millisecond, parallel: true},
		{name: "no New", suite: DeduplicatorSuite{}, err: "New is nil"},
		{name: "Now without Sleep", suite: DeduplicatorSuite{New: newToy, Now: time.Now}, err: "both Now and Sleep"},
		{name: "Sleep without Now", suite: DeduplicatorSuite{New: newToy, Sleep: time.Sleep}, err: "both Now and Sleep"},
		{name: "negative period", suite: DeduplicatorSuite{New: newToy, Period: -time.Second}, err: "Period -1s"},
		{name: "period of a minute", suite: DeduplicatorSuite{New: newToy, Period: time.Minute}, err: "Period 1m0s"},
		{name: "margin over half the period", suite: DeduplicatorSuite{New: newToy, Period: time.Second, Margin: 501 * time.Millisecond}, err: "Margin 501ms"},
		{name: "negative margin", suite: DeduplicatorSuite{New: newToy, Margin: -1}, err: "Margin -1ns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.suite.config()
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.period, cfg.Period)
			assert.Equal(t, tt.margin, cfg.Margin)
			assert.Equal(t, tt.parallel, cfg.realTime)
		})
	}
}

// TestDeduplicatorNilOpen: a New that returns no open function, or an open
// function that returns no Deduplicator, is reported, not a panic.
func TestDeduplicatorNilOpen(t *testing.T) {
	tests := []struct {
		name string
		new  func(*testing.T, time.Duration, time.Duration) func() tlwebhook.Deduplicator
		want string
	}{
		{"nil open", func(*testing.T, time.Duration, time.Duration) func() tlwebhook.Deduplicator { return nil }, "nil open function"},
		{"open returns nil", func(*testing.T, time.Duration, time.Duration) func() tlwebhook.Deduplicator {
			return func() tlwebhook.Deduplicator { return nil }
		}, "returned nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := DeduplicatorSuite{New: tt.new}.config()
			require.NoError(t, err)
			for _, sc := range dedupScenarios() {
				err := cfg.run(t, sc)
				require.Error(t, err, sc.name)
				assert.Contains(t, err.Error(), tt.want, sc.name)
			}
		})
	}
}
