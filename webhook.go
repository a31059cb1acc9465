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
