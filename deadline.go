package tlwebhook

import (
	"context"
	"sync"
	"time"
)

// The callback's context: its parent with the callback deadline. Most
// callbacks return long before their deadline without ever waiting on
// ctx.Done(), so the timer that closes Done is started only when Done is
// first asked for; Err and Deadline need no timer. This saves a timer per
// delivery over context.WithDeadline, with the same behaviour as seen from
// the callback.

// deadlineCtx is a context.Context that is done when its parent is, or at
// deadline.
type deadlineCtx struct {
	context.Context // the parent
	deadline        time.Time

	mu         sync.Mutex
	done       chan struct{} // made by the first Done
	err        error         // set once, when done
	timer      *time.Timer
	stopParent func() bool
}

func withLazyDeadline(parent context.Context, deadline time.Time) *deadlineCtx {
	return &deadlineCtx{Context: parent, deadline: deadline}
}

// Deadline returns the callback deadline.
func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// Done returns a channel closed at the deadline or when the parent is done,
// starting the timer that closes it on first use.
func (c *deadlineCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	c.done = make(chan struct{})
	if c.err != nil {
		close(c.done)
		return c.done
	}
	if err := c.expiredLocked(); err != nil {
		c.finishLocked(err)
		return c.done
	}
	c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.finish(context.DeadlineExceeded) })
	c.stopParent = context.AfterFunc(c.Context, func() { c.finish(c.Context.Err()) })
	return c.done
}

// Err returns nil before the deadline while the parent is not done, else
// why the context is done; the channel of Done, if any, is closed first.
func (c *deadlineCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if err := c.expiredLocked(); err != nil {
		c.finishLocked(err)
		return err
	}
	return nil
}

// expiredLocked reports why the context is done by now, without a timer.
func (c *deadlineCtx) expiredLocked() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *deadlineCtx) finish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.finishLocked(err)
}

func (c *deadlineCtx) finishLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
}

// release stops the timer and the watch on the parent, if started: the
// callback has returned.
func (c *deadlineCtx) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
		c.stopParent()
	}
	if c.err == nil {
		c.err = context.Canceled
		if c.done != nil {
			close(c.done)
		}
	}
}

// String names the context, as the standard library's do.
func (c *deadlineCtx) String() string {
	return "tlwebhook.callbackContext(deadline " + c.deadline.String() + ")"
}
