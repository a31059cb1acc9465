package tlwebhooktest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlwebhook/tlwebhook"
)

// renewScenarios are the scenarios of the LeaseRenewer contract, skipped
// for a deduplicator that is not one: renewals extend a claim by a lease,
// only for the token that holds it, and Handlers keep a claim for as long
// as its callback runs, and say when they lose it.
func renewScenarios() []dedupScenario {
	return []dedupScenario{
		{name: "renew: the claim lasts a lease from each renewal", lease: short, renewer: true, run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilLive(t1.at)
			renewed := r.renew(t1)
			r.untilLive(renewed)
			renewed = r.renew(t1)
			r.untilGone(t1.at)
			r.dup("k", inProgress, renewed)
			r.untilGone(renewed)
			t2 := r.claim("k")
			r.renewLost(t1)
			r.completeLost(t1)
			r.dup("k", inProgress, t2.at)
			r.complete(t2)
			r.dup("k", completed, none)
		}},
		{name: "renew: a renewed claim completes and releases", renewer: true, run: func(r *dedupRun) {
			ta := r.claim("a")
			r.renew(ta)
			r.complete(ta)
			r.dup("a", completed, none)
			tb := r.claim("b")
			r.renew(tb)
			r.release(tb)
			r.claim("b")
		}},
		{name: "renew with a stale token does nothing", lease: short, renewer: true, run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilGone(t1.at)
			t2 := r.claim("k")
			r.untilLive(t2.at)
			r.renewLost(t1)
			r.dup("k", inProgress, t2.at)
			r.untilGone(t2.at)
			r.claim("k")
		}},
		{name: "renew after the lease passed does nothing", lease: short, renewer: true, run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilGone(t1.at)
			r.renewLost(t1)
			r.claim("k")
		}},
		{name: "renew with unknown tokens does nothing", lease: short, renewer: true, run: func(r *dedupRun) {
			t1 := r.claim("k")
			r.untilLive(t1.at)
			r.renewLost(forged("k", neverIssued))
			r.renewLost(forged("k", emptyToken))
			r.renewLost(t1.altered())
			tb := r.claim("b")
			r.renewLost(tb.on("k"))
			r.dup("k", inProgress, t1.at)
			r.untilGone(t1.at)
			r.claim("k")
		}},
		{name: "renew after complete or release does nothing", renewer: true, run: func(r *dedupRun) {
			ta := r.claim("a")
			r.complete(ta)
			r.renewLost(ta)
			r.dup("a", completed, none)
			tb := r.claim("b")
			r.release(tb)
			r.renewLost(tb)
			r.claim("b")
		}},
		{name: "handlers keep the claim while the callback outlasts the lease", lease: short, renewer: true, run: checked(handlerOutlastsLease)},
		{name: "handlers log a claim lost by a stalled holder at error level", lease: short, renewer: true, run: checked(handlerStalledHolder)},
	}
}

// renewWatch is a LeaseRenewer that counts the renewals a Handler asks for
// and can hold them back, as a stalled process would not send them.
type renewWatch struct {
	tlwebhook.Deduplicator
	lr     tlwebhook.LeaseRenewer
	now    func() time.Time
	calls  atomic.Int32
	failed atomic.Int32  // renewals that returned an error
	stall  atomic.Bool   // hold renewals back until resume is closed
	resume chan struct{} // closed to let held renewals through

	mu   sync.Mutex
	last time.Time // when the claim or the latest successful renewal was asked for
	late bool      // a renewal was asked for a lease or more after that
}

func newRenewWatch(d tlwebhook.Deduplicator, now func() time.Time) *renewWatch {
	lr, _ := d.(tlwebhook.LeaseRenewer) // the scenarios that use it run only on renewers
	return &renewWatch{Deduplicator: d, lr: lr, now: now, resume: make(chan struct{})}
}

func (w *renewWatch) Lease() time.Duration { return w.lr.Lease() }

func (w *renewWatch) Claim(ctx context.Context, key string) (string, tlwebhook.ClaimResult, error) {
	start := w.now()
	token, res, err := w.Deduplicator.Claim(ctx, key)
	if err == nil && res == tlwebhook.ClaimAcquired {
		w.mu.Lock()
		w.last = start
		w.mu.Unlock()
	}
	return token, res, err
}

func (w *renewWatch) Renew(ctx context.Context, key, token string) error {
	w.calls.Add(1)
	if w.stall.Load() {
		select {
		case <-w.resume:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	start := w.now()
	err := w.lr.Renew(ctx, key, token)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.failed.Add(1)
		// In real time, a Handler's renewal may come a lease late
		// because the machine did not run it: that is no fault of the
		// deduplicator's.
		w.late = w.late || !start.Before(w.last.Add(w.lr.Lease()))
		return err
	}
	w.last = start
	return nil
}

// renewedLate reports whether a renewal failed after it was asked for a
// lease or more after the previous one.
func (w *renewWatch) renewedLate() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.late
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
			watch = newRenewWatch(d, r.now)
			return watch
		}
		return d
	}}, holdFirstRun(&runs, finish))
	if err != nil {
		return err
	}
	msgID := NewMessageID()
	first := make(chan int, 1)
	go func() { first <- rs.deliver(0, msgID) }()
	if !waitFor(eventTimeout, func() bool { return runs.Load() > 0 }) {
		return fmt.Errorf("the first delivery did not run the callback within %v", eventTimeout)
	}
	claimed := r.now() // the claim was made before this
	for r.now().Before(claimed.Add(r.period + r.margin)) {
		calls := watch.calls.Load()
		r.sleep(r.period / 4)
		// A renewal that failed is the Handler's last: the copy below
		// shows what became of the claim.
		if !waitFor(eventTimeout+r.period, func() bool { return watch.calls.Load() > calls || watch.failed.Load() > 0 }) {
			return fmt.Errorf("the Handler did not renew the claim while its callback ran (lease %v, so every %v)", r.period, r.period/3)
		}
		if watch.failed.Load() > 0 {
			break
		}
	}
	status := rs.deliver(1, msgID)
	if n := runs.Load(); status != http.StatusConflict || n != 1 {
		if watch.renewedLate() {
			return fmt.Errorf("%w: the Handler renewed the claim a lease late, and lost it", errTooSlow)
		}
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
				watch = newRenewWatch(d, r.now)
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
	}, holdFirstRun(&runs, finish))
	if err != nil {
		return err
	}
	defer close(watch.resume)
	msgID := NewMessageID()
	first := make(chan int, 1)
	go func() { first <- rs.deliver(0, msgID) }()
	if !waitFor(eventTimeout, func() bool { return runs.Load() > 0 }) {
		return fmt.Errorf("the first delivery did not run the callback within %v", eventTimeout)
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

// holdFirstRun is a callback that counts its runs in runs and holds the
// first one until finish is closed (or twice the event timeout passes),
// returning nil: a holder still running while its lease would lapse.
func holdFirstRun(runs *atomic.Int32, finish <-chan struct{}) func(context.Context, *tlwebhook.SandboxEvent) error {
	return func(context.Context, *tlwebhook.SandboxEvent) error {
		if runs.Add(1) == 1 {
			select {
			case <-finish:
			case <-time.After(2 * eventTimeout):
			}
		}
		return nil
	}
}
