package tlwebhook

import "errors"

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
	// ErrInvalidSecret means a key does not decode as base64 (with or
	// without the whsec_ prefix), an HMAC secret decodes to fewer than 16
	// bytes, or a whpk_ public key is not the canonical encoding of an
	// Ed25519 point of large order.
	ErrInvalidSecret = errors.New("tlwebhook: invalid secret")
	// ErrPayloadTooLarge means the body is larger than the configured limit.
	ErrPayloadTooLarge = errors.New("tlwebhook: payload too large")
	// ErrInvalidPayload means a verified payload is not a single valid JSON
	// object: a syntax error, another JSON value, a duplicated member name or
	// invalid UTF-8. A [Handler] answers 400.
	ErrInvalidPayload = errors.New("tlwebhook: invalid payload")
	// ErrSchemaDrift means a verified payload is a modelled event that does
	// not fit its struct (breaking [Drift]): a member of another JSON kind, a
	// number that does not fit its Go type, a time that does not parse, or an
	// event_version above the highest this library models. The event reaches
	// [Handler.OnUnknown] or [Handler.OnAny] as an [UnknownEvent]; with
	// neither registered a [Handler] answers 500, so that Svix keeps the
	// message until the library is upgraded.
	ErrSchemaDrift = errors.New("tlwebhook: payload does not fit its event struct (schema drift)")
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
	// ErrMethodNotAllowed means a request used a method other than POST;
	// it is answered 405 with Allow: POST.
	ErrMethodNotAllowed = errors.New("tlwebhook: method not allowed")
	// ErrInProgress is returned by [Handler.Process] for a copy of a
	// message whose first delivery is still being processed elsewhere
	// (the deduplicator's claim is live): retry it later.
	ErrInProgress = errors.New("tlwebhook: delivery in progress elsewhere")
)
