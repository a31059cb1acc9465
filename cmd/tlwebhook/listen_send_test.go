package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/internal/testutil"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// TestSendIntoListen runs listen and send in-process over loopback.
func TestSendIntoListen(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	url, out, stop := startListen(t, "-secret", secret)
	require.True(t, strings.HasSuffix(url, "/webhooks/tensorlake"), url)
	types := tlwebhook.EventTypes()

	t.Run("every event type", func(t *testing.T) {
		n := strconv.Itoa(len(types))
		r := runCmd(t, "", noEnv, "send", "-url", url, "-secret", secret, "-event", "all", "-n", n, "-c", "4")
		require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
		sent := regexp.MustCompile(`(?m)^sent \d+/`+n+` status=204 latency=\S+ event=(\S+) delivery=msg_\S+$`).FindAllStringSubmatch(r.stdout, -1)
		require.Len(t, sent, len(types), r.stdout)
		seen := map[string]bool{}
		for _, m := range sent {
			seen[m[1]] = true
		}
		assert.Len(t, seen, len(types), "each type sent once")
		assert.Regexp(t, `(?m)^summary requests=`+n+` ok=`+n+` failed=0 min=\S+ p50=\S+ p90=\S+ p99=\S+ max=\S+ elapsed=\S+$`, r.stdout)
		for _, typ := range types {
			waitFor(t, out, `(?m)^event `+regexp.QuoteMeta(string(typ))+` delivery=msg_\S+ callback=`+wantCallback(typ)+`( |$)`)
		}
	})

	t.Run("payload file from stdin", func(t *testing.T) {
		body := `{"job_id":"parse_from_file","status":"failure","error":"boom","created_at":"2024-01-01T00:00:00Z","finished_at":"2024-01-01T00:00:01Z"}`
		r := runCmd(t, body, noEnv, "send", "-url", url, "-secret", secret, "-file", "-")
		require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
		assert.Regexp(t, `(?m)^sent 1/1 status=204 latency=\S+ event=file delivery=msg_\S+$`, r.stdout)
		waitFor(t, out, `(?m)^event tensorlake\.document_ingestion\.job\.failed delivery=msg_\S+ callback=OnJobFailed job_id=parse_from_file status=failure error=boom$`)
	})

	t.Run("secret from the environment", func(t *testing.T) {
		getenv := func(k string) string {
			if k == envSecret {
				return secret
			}
			return ""
		}
		r := runCmd(t, "", getenv, "send", "-url", url, "-event", "sandbox.failed")
		require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
		assert.Contains(t, r.stdout, "status=204")
	})

	t.Run("wrong secret", func(t *testing.T) {
		r := runCmd(t, "", noEnv, "send", "-url", url, "-secret", tlwebhooktest.NewSecret(), "-event", "job.completed")
		assert.Equal(t, exitFailure, r.code)
		id := regexp.MustCompile(`(?m)^sent 1/1 status=401 latency=\S+ event=\S+ delivery=(msg_\S+) reason="invalid webhook signature"$`).FindStringSubmatch(r.stdout)
		require.NotNil(t, id, r.stdout)
		assert.Contains(t, r.stdout, "summary requests=1 ok=0 failed=1")
		waitFor(t, out, `(?m)^rejected status=401 delivery=`+id[1]+` reason="tlwebhook: no matching signature"$`)
		assert.Equal(t, 1, strings.Count(out.String(), id[1]), "the rejection is printed once:\n%s", out)
	})

	t.Run("wrong path", func(t *testing.T) {
		r := runCmd(t, "", noEnv, "send", "-url", strings.TrimSuffix(url, "/webhooks/tensorlake")+"/hooks", "-secret", secret, "-event", "job.created")
		assert.Equal(t, exitFailure, r.code)
		assert.Regexp(t, `(?m)^sent 1/1 status=404 `, r.stdout)
		waitFor(t, out, `(?m)^not-found method=POST path=/hooks status=404$`)
	})

	t.Run("wrong method", func(t *testing.T) {
		resp, err := http.Get(url)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		waitFor(t, out, `(?m)^rejected status=405 reason="tlwebhook: method not allowed: GET"$`)
	})

	assert.Equal(t, exitOK, stop())
	assert.True(t, strings.HasSuffix(out.String(), "stopped\n"), out.String())
	assert.NotContains(t, out.String(), secret)
}

// TestListenStopsOnSIGTERM runs listen through run, which installs the
// signal handling of the real command, and sends the process SIGTERM.
func TestListenStopsOnSIGTERM(t *testing.T) {
	out := &testutil.SyncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"listen", "-addr", "127.0.0.1:0", "-secret", tlwebhooktest.NewSecret()}, strings.NewReader(""), out, out)
	}()
	waitFor(t, out, `listening on (http://\S+)\n`)
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case code := <-done:
		assert.Equal(t, exitOK, code)
	case <-time.After(10 * time.Second):
		t.Fatal("listen did not stop on SIGTERM")
	}
	assert.True(t, strings.HasSuffix(out.String(), "stopped\n"), out.String())
}

// TestSendManyShowsProgress sends more requests than get their own line
// and checks that every one reached the receiver.
func TestSendManyShowsProgress(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	h, err := tlwebhook.NewHandler(secret, quietLogger(t))
	require.NoError(t, err)
	var calls atomic.Int64
	onEvery(h, func(context.Context, string, tlwebhook.Event) error {
		calls.Add(1)
		return nil
	})
	srv := httptest.NewServer(h)
	defer srv.Close()

	r := runCmd(t, "", noEnv, "send", "-url", srv.URL, "-secret", secret, "-event", "all", "-n", "50", "-c", "8")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Equal(t, int64(50), calls.Load())
	assert.NotContains(t, r.stdout, "sent ", "successful requests get no line of their own")
	progress := regexp.MustCompile(`(?m)^progress (\d+)/50 ok=(\d+) failed=0$`).FindAllStringSubmatch(r.stdout, -1)
	require.Len(t, progress, 10, r.stdout)
	assert.Equal(t, "5", progress[0][1])
	assert.Equal(t, "50", progress[9][1])
	assert.Regexp(t, `(?m)^summary requests=50 ok=50 failed=0 `, r.stdout)
}

// TestSendFailsOnNon2xx checks exit 1 and the per-request line of a
// failure, also among many requests.
func TestSendFailsOnNon2xx(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if n.Add(1)%10 == 0 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	secret := tlwebhooktest.NewSecret()

	r := runCmd(t, "", noEnv, "send", "-url", srv.URL, "-secret", secret, "-event", "job.created", "-n", "30", "-c", "3")
	assert.Equal(t, exitFailure, r.code)
	assert.Len(t, regexp.MustCompile(`(?m)^sent \d+/30 status=500 latency=\S+ event=\S+ delivery=msg_\S+ reason=boom$`).FindAllString(r.stdout, -1), 3, r.stdout)
	assert.Regexp(t, `(?m)^summary requests=30 ok=27 failed=3 `, r.stdout)

	srv.Close()
	r = runCmd(t, "", noEnv, "send", "-url", srv.URL, "-secret", secret, "-event", "job.created")
	assert.Equal(t, exitFailure, r.code)
	assert.Regexp(t, `(?m)^sent 1/1 status=error error=".*connection refused.*" latency=`, r.stdout)
	assert.Regexp(t, `(?m)^summary requests=1 ok=0 failed=1 elapsed=`, r.stdout)
}

func TestPercentile(t *testing.T) {
	d := func(ms ...int) []time.Duration {
		var out []time.Duration
		for _, m := range ms {
			out = append(out, time.Duration(m)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      int
		want   time.Duration
	}{
		{"single", d(7), 50, 7 * time.Millisecond},
		{"median of four", d(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p90 of ten", d(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{"p99 of ten", d(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p0", d(1, 2), 0, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, percentile(tt.sorted, tt.p))
		})
	}
}
