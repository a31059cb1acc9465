package tlwebhook_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/internal/testutil"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// leaseLogs is a log destination safe for concurrent use.
type leaseLogs struct{ testutil.SyncBuffer }

// lines returns the log lines at level that contain substr.
func (l *leaseLogs) lines(level, substr string) []string {
	var out []string
	for line := range strings.Lines(l.SyncBuffer.String()) {
		if strings.Contains(line, "level="+level) && strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// leaseDelivery is one signed delivery of a sandbox event, as message msgID.
func leaseDelivery(secret, msgID string) *http.Request {
	body := tlwebhooktest.Sample(tlwebhook.EventTypeSandboxCreated)
	signer, err := tlwebhooktest.NewSigner(secret)
	if err != nil {
		panic(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/webhooks/tensorlake", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for name, values := range signer.HeaderFor(msgID, time.Now(), body) {
		req.Header[name] = values
	}
	return req
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func serve(h http.Handler, req *http.Request) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

// TestHandlerCallbackOutlastsLease (issue 11, defect 2): a callback that
// runs longer than the deduplicator's lease, whether its callback timeout is
// longer than the lease or it ignores its deadline, keeps its claim: a copy
// that arrives after the lease would have passed meets it in progress (409)
// and runs nothing, the callback runs once, and its success is recorded, so
// a later copy is answered 2xx without running it. Before the Handler
// renewed claims, the copy ran beside the first callback.
func TestHandlerCallbackOutlastsLease(t *testing.T) {
	// Renewals come every third of the lease; a second's lease leaves a
	// loaded machine two thirds of a second to run one.
	const lease = time.Second
	tests := []struct {
		name       string
		timeout    time.Duration // WithCallbackTimeout
		respectCtx bool          // the callback returns when its context ends
		firstWant  int           // the status of the delivery whose callback outlasts the lease
	}{
		{"callback timeout longer than the lease", 5 * time.Second, true, http.StatusNoContent},
		{"no callback timeout", 0, true, http.StatusNoContent},
		{"callback ignores its deadline", lease / 2, false, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			secret := tlwebhooktest.NewSecret()
			dedup, err := tlwebhook.NewMemoryDeduplicator(tlwebhook.WithLease(lease))
			require.NoError(t, err)
			var logs leaseLogs
			h, err := tlwebhook.NewHandler(secret,
				tlwebhook.WithDeduplicator(dedup),
				tlwebhook.WithCallbackTimeout(tt.timeout),
				tlwebhook.WithLogger(newTextLogger(&logs)))
			require.NoError(t, err)

			var runs, running, concurrent atomic.Int32
			finish := make(chan struct{})
			h.OnSandboxEvent(func(ctx context.Context, _ *tlwebhook.SandboxEvent) error {
				n := runs.Add(1)
				if running.Add(1) > 1 {
					concurrent.Add(1)
				}
				defer running.Add(-1)
				if n > 1 {
					return nil
				}
				select {
				case <-finish:
				case <-time.After(10 * time.Second):
				}
				return nil
			})

			msgID := tlwebhooktest.NewMessageID()
			first := make(chan int, 1)
			go func() { first <- serve(h, leaseDelivery(secret, msgID)) }()
			require.Eventually(t, func() bool { return runs.Load() == 1 }, time.Minute, time.Millisecond)

			time.Sleep(2 * lease) // the lease has passed twice over
			assert.Equal(t, http.StatusConflict, serve(h, leaseDelivery(secret, msgID)),
				"a copy while the first callback still runs")
			close(finish)
			assert.Equal(t, tt.firstWant, <-first)
			assert.Equal(t, http.StatusNoContent, serve(h, leaseDelivery(secret, msgID)),
				"a copy after the callback succeeded: recorded as completed")
			assert.Equal(t, int32(1), runs.Load(), "callback runs")
			assert.Zero(t, concurrent.Load(), "callbacks run concurrently")
			assert.Empty(t, logs.lines("ERROR", "claim lost"), "no claim was lost: %s", logs.String())
		})
	}
}

// TestHandlerLostClaimLogged (issue 11, defect 2): a process paused past
// its lease (here its clock jumps ahead while the callback runs, so no
// renewal comes in time) loses its claim, and a copy claims the message and
// runs. When the paused callback returns, its Handler cannot record the
// success, and says so at error level, naming the lost claim, without the
// secret or the payload.
func TestHandlerLostClaimLogged(t *testing.T) {
	const lease = 10 * time.Second
	clock := tlwebhooktest.NewFakeClock(time.Time{})
	dedup, err := tlwebhook.NewMemoryDeduplicator(tlwebhook.WithLease(lease), tlwebhook.WithDeduplicatorClock(clock.Now))
	require.NoError(t, err)
	secret := tlwebhooktest.NewSecret()
	var logs leaseLogs
	paused, err := tlwebhook.NewHandler(secret,
		tlwebhook.WithDeduplicator(dedup),
		tlwebhook.WithLogger(newTextLogger(&logs)))
	require.NoError(t, err)
	other, err := tlwebhook.NewHandler(secret, tlwebhook.WithDeduplicator(dedup))
	require.NoError(t, err)

	var runs atomic.Int32
	finish := make(chan struct{})
	callback := func(context.Context, *tlwebhook.SandboxEvent) error {
		if runs.Add(1) == 1 {
			<-finish
		}
		return nil
	}
	paused.OnSandboxEvent(callback)
	other.OnSandboxEvent(callback)

	msgID := tlwebhooktest.NewMessageID()
	first := make(chan int, 1)
	go func() { first <- serve(paused, leaseDelivery(secret, msgID)) }()
	require.Eventually(t, func() bool { return runs.Load() == 1 }, time.Minute, time.Millisecond)

	clock.Advance(lease + time.Second) // the pause
	assert.Equal(t, http.StatusNoContent, serve(other, leaseDelivery(secret, msgID)),
		"a copy after the paused holder's lease passed runs")
	assert.Equal(t, int32(2), runs.Load())
	close(finish)
	<-first

	lost := logs.lines("ERROR", tlwebhook.ErrClaimLost.Error())
	assert.NotEmpty(t, lost, "no error-level record of the lost claim; logs:\n%s", logs.String())
	assert.NotContains(t, logs.String(), secret)
	assert.NotContains(t, logs.String(), "9q2j1f4n6y8x0r3k5m7pa", "payload content (the sandbox id)")
}

// lostDedup is a deduplicator whose claims are always found lost: by the
// first renewal and by the settlement.
type lostDedup struct {
	lease   time.Duration
	renewed chan struct{}
	renews  atomic.Int32
}

func (d *lostDedup) Claim(context.Context, string) (string, tlwebhook.ClaimResult, error) {
	return "token", tlwebhook.ClaimAcquired, nil
}
func (d *lostDedup) Complete(context.Context, string, string) error { return tlwebhook.ErrClaimLost }
func (d *lostDedup) Release(context.Context, string, string) error  { return tlwebhook.ErrClaimLost }
func (d *lostDedup) Lease() time.Duration                           { return d.lease }
func (d *lostDedup) Renew(context.Context, string, string) error {
	if d.renews.Add(1) == 1 {
		close(d.renewed)
	}
	return tlwebhook.ErrClaimLost
}

// TestHandlerLostClaimLoggedOnce (issue 20, finding 1): a claim that the
// renewal finds lost is reported once, not again by the settlement, and is
// not renewed any more.
func TestHandlerLostClaimLoggedOnce(t *testing.T) {
	dedup := &lostDedup{lease: 30 * time.Millisecond, renewed: make(chan struct{})}
	secret := tlwebhooktest.NewSecret()
	var logs leaseLogs
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithDeduplicator(dedup), tlwebhook.WithLogger(newTextLogger(&logs)))
	require.NoError(t, err)
	h.OnSandboxEvent(func(ctx context.Context, _ *tlwebhook.SandboxEvent) error {
		<-dedup.renewed // the renewal has found the claim lost
		return nil
	})
	assert.Equal(t, http.StatusNoContent, serve(h, leaseDelivery(secret, tlwebhooktest.NewMessageID())))
	assert.Len(t, logs.lines("ERROR", "claim lost"), 1, logs.String())
	assert.Equal(t, int32(1), dedup.renews.Load(), "a lost claim is not renewed again")
}
