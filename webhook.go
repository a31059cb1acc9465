// Package tlwebhook receives Tensorlake webhooks in Go.
//
// Tensorlake delivers its webhooks through Svix: signed HTTP POSTs that arrive
// at least once, in any order, and must be answered 2xx within 15 seconds.
// This package verifies the Svix signature, decodes the payload into typed
// events and dispatches each event to the callback registered for its type.
//
// The usual entry point is [Handler], an [http.Handler] to mount on one route:
//
//	h, err := tlwebhook.NewHandler(os.Getenv("TENSORLAKE_WEBHOOK_SECRET"))
//	if err != nil {
//		log.Fatal(err)
//	}
//	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
//		log.Printf("job %s parsed %d pages", ev.JobID, ev.Usage.PagesParsed)
//		return nil
//	})
//	http.Handle("POST /webhooks/tensorlake", h)
//
// Lower layers are available for programs that route or decode themselves:
// [Verifier.Verify] checks a payload and its headers, [Verifier.Middleware]
// verifies a request before handing it on, and [ParseEvent] decodes a payload
// that was verified elsewhere (for example one taken from a queue).
//
// # Signatures
//
// A delivery carries three headers, either the svix-* set ([HeaderSvixID],
// [HeaderSvixTimestamp], [HeaderSvixSignature]) or the Standard Webhooks
// webhook-* set. The signed content is id + "." + timestamp + "." + body, and a
// v1 signature is the base64 HMAC-SHA256 of it under the endpoint secret. The
// timestamp must be within a tolerance ([DefaultTolerance], changed with
// [WithTolerance]) of the current time in both directions. Several secrets can
// be accepted at once during a rotation ([WithSecrets]).
//
// # Errors
//
// Every error returned by this package wraps one of the exported sentinel
// errors, such as [ErrNoMatchingSignature], so callers can use [errors.Is].
// No error message contains a secret, a computed signature or payload content.
package tlwebhook

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Header names of the signature scheme. Svix sends the svix-* names;
// white-labelled senders use the Standard Webhooks webhook-* names with the
// same meaning. Both sets are accepted.
const (
	HeaderSvixID           = "svix-id"
	HeaderSvixTimestamp    = "svix-timestamp"
	HeaderSvixSignature    = "svix-signature"
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

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

// Sentinel errors. Errors returned by this package wrap exactly one of them;
// test with [errors.Is].
var (
	// ErrMissingHeaders means the id, timestamp or signature header is
	// missing or empty in both the svix-* and the webhook-* set.
	ErrMissingHeaders = errors.New("tlwebhook: missing signature headers")
	// ErrInvalidHeaders means a signature header is malformed, for example a
	// timestamp that is not a decimal integer.
	ErrInvalidHeaders = errors.New("tlwebhook: invalid signature headers")
	// ErrNoMatchingSignature means no v1 signature in the header matches the
	// payload under any accepted secret.
	ErrNoMatchingSignature = errors.New("tlwebhook: no matching signature")
	// ErrTimestampTooOld means the delivery was signed longer ago than the
	// tolerance allows.
	ErrTimestampTooOld = errors.New("tlwebhook: timestamp too old")
	// ErrTimestampTooNew means the delivery's timestamp lies further in the
	// future than the tolerance allows.
	ErrTimestampTooNew = errors.New("tlwebhook: timestamp too new")
	// ErrInvalidSecret means a secret does not decode as base64 (with or
	// without the whsec_ prefix) or decodes to fewer than 16 bytes.
	ErrInvalidSecret = errors.New("tlwebhook: invalid secret")
	// ErrPayloadTooLarge means the body is larger than the configured limit.
	ErrPayloadTooLarge = errors.New("tlwebhook: payload too large")
	// ErrInvalidPayload means a verified payload is not a single JSON object,
	// or is a known event whose fields have the wrong JSON type.
	ErrInvalidPayload = errors.New("tlwebhook: invalid payload")
	// ErrSourceNotAllowed means a request came from an address outside the
	// allowlist set with [WithAllowedSources].
	ErrSourceNotAllowed = errors.New("tlwebhook: source address not allowed")
	// ErrPermanent marks a callback error that retrying cannot fix; see
	// [Permanent].
	ErrPermanent = errors.New("tlwebhook: permanent failure")
	// ErrDeduplicatorFull is returned by [MemoryDeduplicator.Claim] when the
	// table is at its bound and every entry is a live claim, so no entry can be
	// evicted without risking a second run. A [Handler] answers 503 and Svix
	// retries later.
	ErrDeduplicatorFull = errors.New("tlwebhook: deduplicator full of live claims")
	// ErrClaimLost means a deduplicator claim is no longer held by the token
	// presented: its lease ran out (for example while the process was
	// paused) and the key may have been claimed again. A [Handler] logs it at
	// error level: the callback may have run beside a copy.
	ErrClaimLost = errors.New("tlwebhook: deduplicator claim lost")
	// ErrInvalidOption means an option was given an unusable value, or a
	// combination of options cannot work.
	ErrInvalidOption = errors.New("tlwebhook: invalid option")
	// ErrUnauthorized means the additional authentication configured with
	// [WithBasicAuth] or [WithHeaderAuth] failed.
	ErrUnauthorized = errors.New("tlwebhook: unauthorized")
)

// minKeyBytes is the shortest decoded secret accepted. Svix issues 24-byte
// keys; anything under 16 bytes is a configuration mistake.
const minKeyBytes = 16

// An Option configures a [Verifier] or a [Handler].
type Option func(*config) error

// config holds the settings shared by Verifier and Handler.
type config struct {
	tolerance    time.Duration
	now          func() time.Time
	maxBodyBytes int64
	secrets      []string
	logger       *slog.Logger
	allowed      []netip.Prefix // WithAllowedSources
	trusted      []netip.Prefix // WithTrustedProxies
	sourceCheck  bool

	// Handler-only settings.
	dedup           Deduplicator
	callbackTimeout time.Duration
	handlerOnly     []string // names of Handler-only options given
}

func newConfig(secret string, opts []Option) (*config, error) {
	c := &config{
		tolerance:    DefaultTolerance,
		now:          time.Now,
		maxBodyBytes: DefaultMaxBodyBytes,
		secrets:      []string{secret},

		callbackTimeout: DefaultCallbackTimeout,
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c, nil
}

// WithTolerance sets how far a delivery's timestamp may lie in the past or in
// the future. The default is [DefaultTolerance]. It must be positive.
func WithTolerance(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("tlwebhook: WithTolerance(%v): tolerance must be positive", d)
		}
		c.tolerance = d
		return nil
	}
}

// WithClock sets the function that tells the current time, for tests and
// for programs that verify recorded deliveries. The default is [time.Now].
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("tlwebhook: WithClock(nil)")
		}
		c.now = now
		return nil
	}
}

// WithMaxBodyBytes sets the largest body accepted; larger requests are
// answered 413 without being read further. The default is
// [DefaultMaxBodyBytes]. It must be positive.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("tlwebhook: WithMaxBodyBytes(%d): limit must be positive", n)
		}
		c.maxBodyBytes = n
		return nil
	}
}

// WithSecrets adds further accepted secrets, for example the old and the new
// secret while an endpoint's secret is rotated. A delivery is accepted when
// any v1 signature it carries matches under any of the secrets.
func WithSecrets(secrets ...string) Option {
	return func(c *config) error {
		c.secrets = append(c.secrets, secrets...)
		return nil
	}
}

// WithLogger sets the logger for rejected deliveries, callback errors and
// recovered panics. Log records carry delivery ids and reasons, never bodies
// or secrets. The default is [slog.Default]; pass a logger with a discarding
// handler to silence it.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("tlwebhook: WithLogger(nil)")
		}
		c.logger = l
		return nil
	}
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
// Forged requests never reach d. This option applies to [Handler] only;
// [NewVerifier] rejects it.
func WithDeduplicator(d Deduplicator) Option {
	return func(c *config) error {
		if d == nil {
			return errors.New("tlwebhook: WithDeduplicator(nil)")
		}
		c.dedup = d
		c.handlerOnly = append(c.handlerOnly, "WithDeduplicator")
		return nil
	}
}

// WithCallbackTimeout bounds each callback of a [Handler]: the callback's
// context carries the deadline, and a callback that returns after it has
// passed gets a 503 answer (Svix retries), whatever it returned. If it
// succeeded, a deduplicator still records it as completed, so the retry is
// answered 2xx without running it again. Callbacks run on the request's
// goroutine and should honour their context: the answer waits for them.
// The default is [DefaultCallbackTimeout]; 0 disables the bound. This
// option applies to [Handler] only; [NewVerifier] rejects it.
func WithCallbackTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("tlwebhook: WithCallbackTimeout(%v): timeout must not be negative", d)
		}
		c.callbackTimeout = d
		c.handlerOnly = append(c.handlerOnly, "WithCallbackTimeout")
		return nil
	}
}
