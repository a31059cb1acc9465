package tlwebhook

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"
)

// A HandlerOption configures a [Handler]. Every [VerifierOption] is also a
// HandlerOption; options such as [WithDeduplicator] are HandlerOptions only,
// so that giving one to [NewVerifier] does not compile.
type HandlerOption interface {
	applyHandler(*handlerConfig) error
}

// A VerifierOption configures a [Verifier] or a [Handler].
type VerifierOption interface {
	HandlerOption
	applyVerifier(*verifierConfig) error
}

// verifierConfig holds the settings of a Verifier, which a Handler shares.
type verifierConfig struct {
	tolerance    time.Duration
	now          func() time.Time
	maxBodyBytes int64
	secrets      []string
	logger       *slog.Logger
	allowed      []netip.Prefix // WithAllowedSources
	trusted      []netip.Prefix // WithTrustedProxies
	sourceCheck  bool
	auth         []authCheck // WithBasicAuth, WithHeaderAuth
}

// handlerConfig holds the settings of a Handler.
type handlerConfig struct {
	verifierConfig
	dedup           Deduplicator
	callbackTimeout time.Duration
	inbox           Inbox
	observer        Observer
}

type verifierOption func(*verifierConfig) error

func (o verifierOption) applyVerifier(c *verifierConfig) error { return o(c) }
func (o verifierOption) applyHandler(c *handlerConfig) error   { return o(&c.verifierConfig) }

type handlerOption func(*handlerConfig) error

func (o handlerOption) applyHandler(c *handlerConfig) error { return o(c) }

// optionError returns an error wrapping [ErrInvalidOption] for option name.
func optionError(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOption, name, fmt.Sprintf(format, args...))
}

func defaultVerifierConfig(secret string) verifierConfig {
	return verifierConfig{
		tolerance:    DefaultTolerance,
		now:          time.Now,
		maxBodyBytes: DefaultMaxBodyBytes,
		secrets:      []string{secret},
	}
}

func (c *verifierConfig) finish() {
	if c.logger == nil {
		c.logger = slog.Default()
	}
}

func newVerifierConfig(secret string, opts []VerifierOption) (*verifierConfig, error) {
	c := defaultVerifierConfig(secret)
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt.applyVerifier(&c); err != nil {
			return nil, err
		}
	}
	c.finish()
	return &c, nil
}

func newHandlerConfig(secret string, opts []HandlerOption) (*handlerConfig, error) {
	c := &handlerConfig{verifierConfig: defaultVerifierConfig(secret), callbackTimeout: DefaultCallbackTimeout}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt.applyHandler(c); err != nil {
			return nil, err
		}
	}
	c.finish()
	if c.dedup != nil && c.inbox != nil {
		// The deduplicator would mark a message complete before the job's
		// transaction commits: if the commit failed, the inbox's retry would
		// find it "done" and its effects would be lost.
		return nil, optionError("WithDeduplicator", "not with WithInbox: the inbox already runs each message once (one job per idempotency key), and a deduplicator would mark a message complete before the job's transaction commits, so a failed commit would lose its effects")
	}
	if c.dedup != nil && c.callbackTimeout == 0 {
		if _, ok := c.dedup.(LeaseRenewer); !ok {
			return nil, optionError("WithDeduplicator", "a deduplicator that cannot renew its claims (no LeaseRenewer) needs a callback timeout shorter than its lease; WithCallbackTimeout(0) removes the bound")
		}
	}
	return c, nil
}

// WithTolerance sets how far a delivery's timestamp may lie in the past or in
// the future. The default is [DefaultTolerance]. It must be positive.
func WithTolerance(d time.Duration) VerifierOption {
	return verifierOption(func(c *verifierConfig) error {
		if d <= 0 {
			return optionError("WithTolerance", "%v: tolerance must be positive", d)
		}
		c.tolerance = d
		return nil
	})
}

// WithClock sets the function that tells the current time, for tests and
// for programs that verify recorded deliveries. The default is [time.Now].
func WithClock(now func() time.Time) VerifierOption {
	return verifierOption(func(c *verifierConfig) error {
		if now == nil {
			return optionError("WithClock", "nil clock")
		}
		c.now = now
		return nil
	})
}

// maxBodyLimit is the largest body limit [WithMaxBodyBytes] accepts: the
// pipeline reads one byte past the limit to detect an oversized body.
const maxBodyLimit = math.MaxInt64 - 1

// WithMaxBodyBytes sets the largest body accepted; larger requests are
// answered 413 without being read further. The default is
// [DefaultMaxBodyBytes]. It must be positive; values above
// math.MaxInt64-1 are clamped to it. Memory follows the bytes received,
// never the declared Content-Length, so a large limit costs nothing until
// a large body arrives.
func WithMaxBodyBytes(n int64) VerifierOption {
	return verifierOption(func(c *verifierConfig) error {
		if n <= 0 {
			return optionError("WithMaxBodyBytes", "%d: limit must be positive", n)
		}
		c.maxBodyBytes = min(n, maxBodyLimit)
		return nil
	})
}

// WithSecrets adds further accepted keys, for example the old and the new
// secret while an endpoint's secret is rotated. A delivery is accepted when
// any signature it carries matches under any of the keys.
func WithSecrets(secrets ...string) VerifierOption {
	return verifierOption(func(c *verifierConfig) error {
		c.secrets = append(c.secrets, secrets...)
		return nil
	})
}

// WithLogger sets the logger for rejected deliveries, callback errors and
// recovered panics. Log records carry delivery ids and reasons, never bodies
// or secrets. The default is [slog.Default]; pass a logger with a discarding
// handler to silence it.
func WithLogger(l *slog.Logger) VerifierOption {
	return verifierOption(func(c *verifierConfig) error {
		if l == nil {
			return optionError("WithLogger", "nil logger")
		}
		c.logger = l
		return nil
	})
}

// WithDeduplicator makes a [Handler] run each message's callback once, even
// though Svix delivers at least once: after verification and decoding, the
// delivery's [Delivery.IdempotencyKey] is claimed in d. Then:
//
//   - the first delivery of a key runs the callback; when it succeeds the key
//     is marked completed, when it fails the claim is released so that the
//     retry runs it again;
//   - a copy that arrives while the first is still running gets 409 and
//     runs nothing (Svix retries it later);
//   - a copy of a completed message gets 2xx and runs nothing;
//   - if d fails (for example Redis is unreachable), the delivery gets 503
//     and runs nothing.
//
// While a callback runs, its claim is renewed when d is a [LeaseRenewer]
// (both deduplicators of this project are), so a callback slower than the
// lease keeps it. Forged requests never reach d. It cannot be combined with
// [WithInbox], which deduplicates on its own.
func WithDeduplicator(d Deduplicator) HandlerOption {
	return handlerOption(func(c *handlerConfig) error {
		if d == nil {
			return optionError("WithDeduplicator", "nil deduplicator")
		}
		c.dedup = d
		return nil
	})
}

// WithCallbackTimeout bounds each callback of a [Handler]: the callback's
// context carries the deadline, and a callback that returns after it has
// passed gets a 503 answer (Svix retries), whatever it returned. If it
// succeeded, a deduplicator still records it as completed, so the retry is
// answered 2xx without running it again. Callbacks run on the request's
// goroutine and should honour their context: the answer waits for them.
// The default is [DefaultCallbackTimeout]; 0 disables the bound.
func WithCallbackTimeout(d time.Duration) HandlerOption {
	return handlerOption(func(c *handlerConfig) error {
		if d < 0 {
			return optionError("WithCallbackTimeout", "%v: timeout must not be negative", d)
		}
		c.callbackTimeout = d
		return nil
	})
}

// WithInbox makes a [Handler] record each verified delivery in ib instead of
// running its callback during the request: it answers 204 once
// [Inbox.Enqueue] returned nil and 503 when it failed, and a worker later
// runs the callback with [Handler.Process]. A delivery that does not decode
// is answered 400 and not recorded. The module
// github.com/tlwebhook/tlwebhook/riverinbox provides an Inbox on River.
//
// An inbox already runs each message once: it records one job per
// [Delivery.IdempotencyKey]. WithInbox and [WithDeduplicator] together are
// refused with an error wrapping [ErrInvalidOption], because the
// deduplicator would mark a message complete before the job's transaction
// commits, and a commit that then failed would lose the message's effects.
func WithInbox(ib Inbox) HandlerOption {
	return handlerOption(func(c *handlerConfig) error {
		if ib == nil {
			return optionError("WithInbox", "nil inbox")
		}
		c.inbox = ib
		return nil
	})
}

// WithObserver makes a [Handler] report every request it answers, and every
// [Handler.Process] call, to o; see [Observation]. The module
// github.com/tlwebhook/tlwebhook/otel turns them into OpenTelemetry metrics
// and traces.
func WithObserver(o Observer) HandlerOption {
	return handlerOption(func(c *handlerConfig) error {
		if o == nil {
			return optionError("WithObserver", "nil observer")
		}
		c.observer = o
		return nil
	})
}

// Defaults used when the corresponding option is not given.
const (
	// DefaultTolerance is how far a delivery's timestamp may lie in the past
	// or in the future. It matches Svix's own libraries.
	DefaultTolerance = 5 * time.Minute

	// DefaultMaxBodyBytes is the largest request body accepted. Tensorlake's
	// payloads are a few kilobytes.
	DefaultMaxBodyBytes int64 = 1 << 20

	// DefaultCallbackTimeout bounds a [Handler] callback, safely under the
	// 15 seconds Svix waits for an answer.
	DefaultCallbackTimeout = 10 * time.Second
)
