package tlwebhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"time"
)

// Running a callback: under the callback timeout, with panics recovered,
// holding the deduplicator's claim for as long as it runs.

// settleTimeout bounds the deduplicator update after a callback.
const settleTimeout = 5 * time.Second

// run calls the callback under the callback timeout and settles the claim,
// if any, once it ends. The callback runs on the request's goroutine: its
// context carries the deadline, and a callback that returns after the
// deadline has overrun, whatever it returned. A callback that ignores its
// context delays the answer, which Svix treats like a 5xx (it retries, and
// a deduplicator answers 409 to copies until it finishes).
func (h *Handler) run(ctx context.Context, fn *callbackFunc, ev Event, c *claim) result {
	// What the claim is settled with: the callback's own error, or, when
	// the callback ends its goroutine instead of returning (runtime.Goexit,
	// as t.FailNow does), errCallbackExited, so that the claim is released
	// and a retry can run instead of meeting 409 until Svix gives up.
	cbErr := errCallbackExited
	if c != nil {
		c.hold(ctx)
		defer func() { c.settle(ctx, cbErr) }()
	}
	start := time.Now()
	timedOut := false
	if h.timeout <= 0 {
		cbErr = call(ctx, fn, ev)
	} else {
		cctx := withLazyDeadline(ctx, start.Add(h.timeout)) // one clock read for both
		cbErr = call(cctx, fn, ev)
		timedOut = ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded)
		cctx.release()
	}
	dur := time.Since(start)
	switch err := cbErr; {
	case timedOut:
		// A callback that succeeded late is still completed in the
		// deduplicator (settled with cbErr), so the retry is answered 2xx.
		if err == nil {
			err = fmt.Errorf("callback overran its deadline of %v: %w", h.timeout, context.DeadlineExceeded)
		}
		return result{status: http.StatusServiceUnavailable, outcome: DeliveryFailed, err: err, dur: dur,
			level: slog.LevelError, msg: "tlwebhook: callback timed out"}
	case err != nil:
		return result{status: http.StatusInternalServerError, outcome: DeliveryFailed, err: err, dur: dur,
			level: slog.LevelError, msg: "tlwebhook: callback failed"}
	}
	return result{status: http.StatusNoContent, outcome: DeliveryProcessed, dur: dur, level: slog.LevelDebug, msg: "tlwebhook: delivery processed"}
}

func call(ctx context.Context, fn *callbackFunc, ev Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return (*fn)(ctx, ev)
}

// errCallbackExited releases the claim of a callback that ended its
// goroutine instead of returning.
var errCallbackExited = errors.New("callback exited its goroutine without returning")

// panicError is a recovered callback panic.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("callback panicked: %v", e.value) }

// A claim is a deduplicator claim held while a callback runs. With a
// [LeaseRenewer], one timer renews it every third of the lease (no
// goroutine waits in between); a claim found lost is logged once, at error
// level, by whichever of the renewal or the settlement finds it first.
type claim struct {
	h          *Handler
	key, token string

	mu       sync.Mutex
	timer    *time.Timer
	every    time.Duration
	stopped  bool
	lost     bool          // reported lost already
	renewing chan struct{} // closed when the renewal in flight ends
}

// hold starts renewing the claim, when the deduplicator can.
func (c *claim) hold(ctx context.Context) {
	if c.h.renewer == nil {
		return
	}
	c.every = c.h.renewer.Lease() / 3
	if c.every <= 0 {
		return
	}
	c.mu.Lock()
	c.timer = time.AfterFunc(c.every, func() { c.renew(ctx) })
	c.mu.Unlock()
}

// renew runs on the timer's goroutine: it renews the claim and re-arms the
// timer, unless the callback has ended or the claim is lost.
func (c *claim) renew(ctx context.Context) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	done := make(chan struct{})
	c.renewing = done
	c.mu.Unlock()

	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.every)
	err := c.h.renewer.Renew(rctx, c.key, c.token)
	cancel()
	if err != nil {
		c.report(ctx, "tlwebhook: deduplicator claim renewal failed", err)
	}

	c.mu.Lock()
	c.renewing = nil
	if !c.stopped && !c.lost {
		c.timer.Reset(c.every)
	}
	c.mu.Unlock()
	close(done)
}

// settle stops the renewals, waiting for one in flight (a renewal after
// Complete would find the claim gone), then completes the claim or
// releases it, even if the sender has hung up meanwhile: a canceled
// context here would leave the claim to expire and let a retry run the
// callback again.
func (c *claim) settle(ctx context.Context, err error) {
	c.mu.Lock()
	c.stopped = true
	if c.timer != nil {
		c.timer.Stop()
	}
	inFlight := c.renewing
	c.mu.Unlock()
	if inFlight != nil {
		<-inFlight
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	var derr error
	if err == nil {
		derr = c.h.dedup.Complete(sctx, c.key, c.token)
	} else {
		derr = c.h.dedup.Release(sctx, c.key, c.token)
	}
	if derr != nil {
		c.report(ctx, "tlwebhook: deduplicator update failed", derr)
	}
}

// report logs a failed renewal or settlement at error level; a lost claim
// only once.
func (c *claim) report(ctx context.Context, msg string, err error) {
	if errors.Is(err, ErrClaimLost) {
		c.mu.Lock()
		already := c.lost
		c.lost = true
		c.mu.Unlock()
		if already {
			return
		}
		msg = "tlwebhook: deduplicator claim lost while the callback ran: a copy may have run beside it"
	}
	d, _ := DeliveryFromContext(ctx)
	c.h.logger.LogAttrs(ctx, slog.LevelError, msg, slog.String("delivery_id", truncate(d.ID, 128)), slog.String("error", err.Error()))
}
