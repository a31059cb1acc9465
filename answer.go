package tlwebhook

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Answering a request that failed a check: the fixed response texts, and
// the rejection log, limited per Verifier.

// Fixed, short response bodies: details go to the logger only.
var statusText = map[int]string{
	http.StatusMethodNotAllowed:      "method not allowed",
	http.StatusRequestEntityTooLarge: "payload too large",
	http.StatusUnauthorized:          "invalid webhook signature",
	http.StatusBadRequest:            "invalid webhook payload",
	http.StatusInternalServerError:   "webhook processing failed",
	http.StatusServiceUnavailable:    "webhook processing unavailable, retry later",
	http.StatusConflict:              "delivery already in progress",
	http.StatusForbidden:             "source address not allowed",
}

// unauthorizedText gives each reason for a 401 its own fixed text.
var unauthorizedText = []struct {
	err  error
	text string
}{
	{ErrMissingHeaders, "missing webhook signature headers"},
	{ErrInvalidHeaders, "malformed webhook signature headers"},
	{ErrTimestampTooOld, "webhook timestamp too old"},
	{ErrTimestampTooNew, "webhook timestamp too new"},
	{ErrUnauthorized, "webhook authentication failed"},
	{ErrNoMatchingSignature, "invalid webhook signature"},
}

func writeStatus(w http.ResponseWriter, status int) {
	http.Error(w, statusText[status], status)
}

// reject answers a request that failed a check and logs why: at warn level
// for failed authentication or signatures (a wrong secret shows up here),
// at info level otherwise. At most rejectLogsPerSecond records a second are
// written per Verifier; the next one written says how many were dropped, so
// that a flood of forged requests cannot turn into a flood of log bytes.
func (v *Verifier) reject(w http.ResponseWriter, r *http.Request, status int, id string, err error) {
	text := statusText[status]
	level := slog.LevelInfo
	if status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	if status == http.StatusUnauthorized {
		level = slog.LevelWarn
		for _, u := range unauthorizedText {
			if errors.Is(err, u.err) {
				text = u.text
				break
			}
		}
	}
	http.Error(w, text, status)
	if !v.logger.Enabled(r.Context(), level) {
		return
	}
	ok, dropped := v.logs.allow(time.Now())
	if dropped > 0 {
		v.logger.LogAttrs(r.Context(), slog.LevelWarn, "tlwebhook: rejection log records suppressed",
			slog.Int64("suppressed", dropped), slog.Int("limit_per_second", rejectLogsPerSecond))
	}
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.Int("status", status), slog.String("error", err.Error())}
	if id != "" {
		attrs = append(attrs, slog.String("delivery_id", truncate(id, 128)))
	}
	v.logger.LogAttrs(r.Context(), level, "tlwebhook: delivery rejected", attrs...)
}

// truncate bounds attacker-controlled strings before they reach logs.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// rejectLogsPerSecond bounds the rejection log records of one Verifier.
const rejectLogsPerSecond = 10

// A logLimiter lets through rejectLogsPerSecond records per second and
// counts the rest.
type logLimiter struct {
	mu         sync.Mutex
	second     int64
	n          int
	suppressed int64
}

// allow reports whether a record may be written now, and how many were
// suppressed since the last one written (to be reported first).
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int64) {
	sec := now.Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec != l.second {
		l.second, l.n = sec, 0
	}
	if l.n >= rejectLogsPerSecond {
		l.suppressed++
		return false, 0
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// full reports whether a record written now would be suppressed.
func (l *logLimiter) full(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return now.Unix() == l.second && l.n >= rejectLogsPerSecond
}
