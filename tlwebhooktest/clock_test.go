package tlwebhooktest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

func TestFakeClock(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name string
		move func(c *tlwebhooktest.FakeClock)
		want time.Time
	}{
		{"still", func(*tlwebhooktest.FakeClock) {}, start},
		{"advance", func(c *tlwebhooktest.FakeClock) { c.Advance(90 * time.Second) }, start.Add(90 * time.Second)},
		{"advance twice", func(c *tlwebhooktest.FakeClock) { c.Advance(time.Hour); c.Advance(time.Nanosecond) }, start.Add(time.Hour + time.Nanosecond)},
		{"back", func(c *tlwebhooktest.FakeClock) { c.Advance(-time.Minute) }, start.Add(-time.Minute)},
		{"set", func(c *tlwebhooktest.FakeClock) { c.Advance(time.Hour); c.Set(start.AddDate(1, 0, 0)) }, start.AddDate(1, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tlwebhooktest.NewFakeClock(start)
			tt.move(c)
			assert.Equal(t, tt.want, c.Now())
			assert.Equal(t, tt.want, c.Now(), "reading does not move it")
		})
	}

	t.Run("zero start is a fixed date", func(t *testing.T) {
		a, b := tlwebhooktest.NewFakeClock(time.Time{}), tlwebhooktest.NewFakeClock(time.Time{})
		assert.False(t, a.Now().IsZero())
		assert.Equal(t, a.Now(), b.Now())
	})

	t.Run("concurrent use", func(t *testing.T) {
		c := tlwebhooktest.NewFakeClock(start)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 100 {
					c.Advance(time.Millisecond)
					_ = c.Now()
				}
			})
		}
		wg.Wait()
		assert.Equal(t, start.Add(800*time.Millisecond), c.Now())
	})
}
