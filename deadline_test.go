package tlwebhook

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitDone waits for ctx to be done, failing after a bound far above any
// scheduling delay.
func waitDone(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
		t.Fatal("the context was never done")
	}
}

// TestLazyDeadline checks that the callback's context behaves as one made
// by context.WithDeadline, although its timer starts only with Done.
func TestLazyDeadline(t *testing.T) {
	type key struct{}
	parent := context.WithValue(context.Background(), key{}, "v")

	t.Run("deadline and values", func(t *testing.T) {
		d := time.Now().Add(time.Hour)
		c := withLazyDeadline(parent, d)
		defer c.release()
		got, ok := c.Deadline()
		assert.True(t, ok)
		assert.Equal(t, d, got)
		assert.Equal(t, "v", c.Value(key{}))
		assert.NoError(t, c.Err())
	})
	t.Run("Done closes at the deadline", func(t *testing.T) {
		c := withLazyDeadline(parent, time.Now().Add(10*time.Millisecond))
		defer c.release()
		waitDone(t, c)
		assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	})
	t.Run("Err after the deadline without Done", func(t *testing.T) {
		c := withLazyDeadline(parent, time.Now().Add(-time.Millisecond))
		defer c.release()
		assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		select {
		case <-c.Done():
		default:
			t.Fatal("Done is not closed although Err is set")
		}
	})
	t.Run("Err non-nil only once Done is closed", func(t *testing.T) {
		c := withLazyDeadline(parent, time.Now().Add(5*time.Millisecond))
		defer c.release()
		done := c.Done()
		for c.Err() == nil {
			time.Sleep(time.Millisecond) // polling Err, as a callback may
		}
		select {
		case <-done:
		default:
			t.Fatal("Err returned an error before Done was closed")
		}
	})
	t.Run("the parent's cancellation", func(t *testing.T) {
		p, cancel := context.WithCancel(parent)
		c := withLazyDeadline(p, time.Now().Add(time.Hour))
		defer c.release()
		_ = c.Done()
		cancel()
		waitDone(t, c)
		assert.ErrorIs(t, c.Err(), context.Canceled)

		p2, cancel2 := context.WithCancel(parent)
		cancel2()
		c2 := withLazyDeadline(p2, time.Now().Add(time.Hour))
		defer c2.release()
		assert.ErrorIs(t, c2.Err(), context.Canceled, "without Done")
	})
	t.Run("a derived context ends at the deadline", func(t *testing.T) {
		c := withLazyDeadline(parent, time.Now().Add(10*time.Millisecond))
		defer c.release()
		child, cancel := context.WithCancel(c)
		defer cancel()
		waitDone(t, child)
		assert.ErrorIs(t, child.Err(), context.DeadlineExceeded)
		dl, ok := child.Deadline()
		require.True(t, ok)
		assert.Equal(t, c.deadline, dl)
	})
	t.Run("release ends it and stops the timer", func(t *testing.T) {
		c := withLazyDeadline(parent, time.Now().Add(time.Hour))
		_ = c.Done()
		c.release()
		waitDone(t, c)
		assert.ErrorIs(t, c.Err(), context.Canceled)
		assert.False(t, c.timer.Stop(), "the timer was stopped by release")
	})
}
