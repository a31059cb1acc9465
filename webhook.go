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
// webhook-* set. The signed content is id + "." + timestamp + "." + body. A
// v1 signature is the base64 HMAC-SHA256 of it under the endpoint secret
// (whsec_...); a v1a signature is an Ed25519 signature of it, checked with
// the endpoint's public key (whpk_...). The timestamp must be within a
// tolerance ([DefaultTolerance], changed with [WithTolerance]) of the
// current time in both directions. Several keys, of either kind, can be
// accepted at once during a rotation ([WithSecrets]). When a signature does
// not match, the 401's log record says what can be told of the cause (a
// body consumed or re-encoded by a middleware, a key that verified nothing),
// and [Verifier.Diagnose] explains any delivery in full.
//
// # Events
//
// Every event kind is a row of one table ([EventKinds]): its struct, its
// wire types and its callback. Payloads are decoded strictly, with the
// semantics of encoding/json/v2. Tensorlake's payloads change over time: a
// delivery whose shape drifted is never lost to it ([Drift], [CheckDrift]).
//
// # Retries and duplicates
//
// Svix delivers at least once. [WithDeduplicator] runs each message's
// callback once across retries and replicas; [WithInbox] records each
// delivery durably and runs its callback later, once, in the transaction of
// its effects (module github.com/tlwebhook/tlwebhook/riverinbox).
//
// # Errors
//
// Every error returned by this package wraps one of the exported sentinel
// errors, such as [ErrNoMatchingSignature], so callers can use [errors.Is].
// No error message contains a secret, a computed signature or payload content.
package tlwebhook
