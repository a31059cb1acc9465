package tlwebhook_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// The README's quick start: a Handler with one callback per event kind it
// cares about, mounted on one route of a server with every timeout set.
func Example_quickStart() {
	os.Setenv("TENSORLAKE_WEBHOOK_SECRET", tlwebhooktest.NewSecret()) // for the example only

	h, err := tlwebhook.NewHandler(os.Getenv("TENSORLAKE_WEBHOOK_SECRET")) // "whsec_..."
	if err != nil {
		log.Fatal(err)
	}
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		slog.InfoContext(ctx, "parsed", "job", ev.JobID, "pages", ev.Usage.PagesParsed)
		return nil // 2xx: Svix stops; return an error and Svix retries
	})
	h.OnSandboxEvent(func(ctx context.Context, ev *tlwebhook.SandboxEvent) error {
		slog.InfoContext(ctx, "sandbox", "type", ev.EventType, "id", ev.Data.Sandbox.ID)
		return nil
	})
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/tensorlake", h)
	srv := &http.Server{
		Addr:              ":8080",
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      20 * time.Second, // above the callback timeout (10 s)
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	// log.Fatal(srv.ListenAndServe())

	fmt.Println(srv.Addr)
	// Output: :8080
}

// ExampleHandler sends the Handler a delivery signed the way Svix signs
// them, with the tlwebhooktest package.
func ExampleHandler() {
	secret := tlwebhooktest.NewSecret()
	h, err := tlwebhook.NewHandler(secret)
	if err != nil {
		log.Fatal(err)
	}
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		d, _ := tlwebhook.DeliveryFromContext(ctx)
		fmt.Printf("job %s parsed %d pages (delivery id set: %t)\n", ev.JobID, ev.Usage.PagesParsed, d.ID != "")
		return nil
	})
	req := tlwebhooktest.NewRequest(secret, "/webhooks/tensorlake", tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output:
	// job parse_XXX parsed 10 pages (delivery id set: true)
	// 204
}

// On registers a callback for any event struct, and OnAny catches every
// event that has no callback of its own: exactly one runs per delivery.
func ExampleOn() {
	secret := tlwebhooktest.NewSecret()
	h, _ := tlwebhook.NewHandler(secret)

	tlwebhook.On(h, func(ctx context.Context, ev *tlwebhook.JobFailed) error {
		fmt.Println("job failed:", ev.Error)
		return nil
	})
	h.OnAny(func(ctx context.Context, ev tlwebhook.Event) error {
		fmt.Println("forwarded:", ev.Type()) // e.g. to a queue
		return nil
	})

	for _, t := range []tlwebhook.EventType{tlwebhook.EventTypeJobFailed, tlwebhook.EventTypeSandboxCreated} {
		h.ServeHTTP(httptest.NewRecorder(), tlwebhooktest.NewRequest(secret, "/", tlwebhooktest.Sample(t)))
	}
	// Output:
	// job failed: Error message describing the failure
	// forwarded: tensorlake.sandbox.created
}

// Deliveries are not ordered: keep the last envelope applied per source and
// skip events that do not compare greater. Callbacks run concurrently, so
// the map is guarded.
func ExampleEnvelope_Compare() {
	secret := tlwebhooktest.NewSecret()
	h, _ := tlwebhook.NewHandler(secret)

	var mu sync.Mutex
	seen := map[string]tlwebhook.Envelope{} // last envelope applied, per SourceID
	h.OnRequestEvent(func(ctx context.Context, ev *tlwebhook.RequestEvent) error {
		mu.Lock()
		defer mu.Unlock()
		if last, ok := seen[ev.SourceID]; ok && ev.Compare(&last) <= 0 {
			return nil // stale or repeated: something newer was already applied
		}
		seen[ev.SourceID] = ev.Envelope
		fmt.Println("applied", ev.EventType)
		return nil
	})

	// The request's completion (ordinal 1) arrives before its creation (0).
	for _, t := range []tlwebhook.EventType{tlwebhook.EventTypeRequestCompleted, tlwebhook.EventTypeRequestCreated} {
		h.ServeHTTP(httptest.NewRecorder(), tlwebhooktest.NewRequest(secret, "/", tlwebhooktest.Sample(t)))
	}
	// Output:
	// applied tensorlake.application.request.completed
}

// A Handler that runs each message's callback once across retries and
// copies, in one process.
func ExampleWithDeduplicator() {
	secret := tlwebhooktest.NewSecret()

	dedup, err := tlwebhook.NewMemoryDeduplicator()
	if err != nil {
		log.Fatal(err)
	}
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithDeduplicator(dedup))
	if err != nil {
		log.Fatal(err)
	}

	runs := 0
	h.OnJobCompleted(func(context.Context, *tlwebhook.JobCompleted) error { runs++; return nil })
	signer, _ := tlwebhooktest.NewSigner(secret)
	body := tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)
	header := signer.Header(body) // one message, delivered twice
	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body)))
		req.Header = header.Clone()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	fmt.Println("callback runs:", runs)
	// Output:
	// 204
	// 204
	// callback runs: 1
}

// A callback's permanent failure: Svix is told to stop retrying.
func ExamplePermanent() {
	secret := tlwebhooktest.NewSecret()
	h, _ := tlwebhook.NewHandler(secret, tlwebhook.WithLogger(slog.New(slog.DiscardHandler)))
	h.OnJobFailed(func(ctx context.Context, ev *tlwebhook.JobFailed) error {
		return tlwebhook.Permanent(errors.New("job belongs to a deleted account"))
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, tlwebhooktest.NewRequest(secret, "/", tlwebhooktest.Sample(tlwebhook.EventTypeJobFailed)))
	fmt.Println(rec.Code, rec.Header().Get(tlwebhook.HeaderWebhookDelivery))
	// Output: 500 abort-message
}

func ExampleVerifier_Verify() {
	// Svix's published test vector: a delivery signed at 2021-02-25 15:02:10 UTC.
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	payload := []byte(`{"test": 2432232314}`)
	header := http.Header{}
	header.Set("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	header.Set("svix-timestamp", "1614265330")
	header.Set("svix-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")

	// Pretend it is a minute later, so the old delivery is within the tolerance.
	v, err := tlwebhook.NewVerifier(secret, tlwebhook.WithClock(func() time.Time {
		return time.Unix(1614265330, 0).Add(time.Minute)
	}))
	if err != nil {
		log.Fatal(err)
	}

	d, err := v.Verify(payload, header)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.ID, d.Timestamp.UTC().Format(time.RFC3339))

	// A payload that is not byte for byte the one signed does not verify.
	_, err = v.Verify([]byte(`{"test":2432232314}`), header)
	fmt.Println(errors.Is(err, tlwebhook.ErrNoMatchingSignature))
	// Output:
	// msg_p5jXN8AQM9LWM0D4loKWxJek 2021-02-25T15:02:10Z
	// true
}

func ExampleVerifier_Middleware() {
	secret := tlwebhooktest.NewSecret()
	v, err := tlwebhook.NewVerifier(secret)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/webhooks/tensorlake", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only verified deliveries get here; the body is still readable.
		body, _ := io.ReadAll(r.Body)
		ev, err := tlwebhook.ParseEvent(body)
		switch {
		case errors.Is(err, tlwebhook.ErrSchemaDrift):
			// A modelled event that no longer fits this version's structs
			// (ev is an *UnknownEvent holding it): answer 5xx so that Svix
			// retries once the library is upgraded, or handle ev as is.
			http.Error(w, "payload not understood yet", http.StatusInternalServerError)
			return
		case err != nil:
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		fmt.Println("received", ev.Type())
		w.WriteHeader(http.StatusNoContent)
	})))

	body := tlwebhooktest.Sample(tlwebhook.EventTypeApplicationCreated)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, tlwebhooktest.NewRequest(secret, "/webhooks/tensorlake", body))
	fmt.Println(rec.Code)

	// The same body without signature headers never reaches the handler.
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/webhooks/tensorlake", strings.NewReader(string(body))))
	fmt.Println(rec.Code)
	// Output:
	// received tensorlake.application.created
	// 204
	// 401
}

func ExampleParseEvent() {
	// A payload verified earlier, for example taken from a queue.
	payload := []byte(`{
		"event_id": "evt_019f95fb", "event_type": "tensorlake.sandbox.failed", "event_version": 1,
		"occurred_at": "2026-07-24T21:15:15.123Z", "project_id": "project_123",
		"source_id": "src_01k0example", "source_revision": "81247", "source_ordinal": 0,
		"data": {"previous_status": "running", "sandbox": {
			"id": "9q2j1f4n6y8x0r3k5m7pa", "type": "named", "generation_id": 2,
			"status": "terminated", "outcome": "failure", "outcome_reason": "out_of_memory",
			"created_at": "2026-07-24T20:10:00Z",
			"resources": {"cpus": 2, "memory_mb": 4096, "disk_mb": 20480, "gpu_count": 0}}}}`)

	ev, err := tlwebhook.ParseEvent(payload)
	if err != nil {
		log.Fatal(err)
	}
	switch ev := ev.(type) {
	case *tlwebhook.SandboxEvent:
		sb := ev.Data.Sandbox
		fmt.Println(ev.EventType, sb.ID, sb.Status)
		if sb.OutcomeReason != nil {
			fmt.Println("reason:", *sb.OutcomeReason)
		}
	case *tlwebhook.JobCompleted:
		fmt.Println("job", ev.JobID, "completed")
	case *tlwebhook.UnknownEvent:
		fmt.Println("unknown event", ev.Type())
	}

	// Strict: a duplicated member is an error, never "the last one wins".
	_, err = tlwebhook.ParseEvent([]byte(`{"status":"pending","status":"failure"}`))
	fmt.Println(errors.Is(err, tlwebhook.ErrInvalidPayload))
	// Output:
	// tensorlake.sandbox.failed 9q2j1f4n6y8x0r3k5m7pa terminated
	// reason: out_of_memory
	// true
}

// Checking payloads taken from a queue for drift: what Tensorlake sends
// that this version of the library does not model.
func ExampleCheckDrift() {
	payload := []byte(`{
		"event_id": "evt_019f95fb", "event_type": "tensorlake.sandbox.failed", "event_version": 1,
		"occurred_at": "2026-07-24T21:15:15.123Z", "project_id": "project_123",
		"source_id": "src_01k0example", "source_revision": "81247", "source_ordinal": 0,
		"data": {"previous_status": "running", "sandbox": {
			"id": "9q2j1f4n6y8x0r3k5m7pa", "type": "named", "generation_id": 2,
			"status": "terminated", "outcome": "failure", "outcome_reason": "cosmic_rays",
			"created_at": "2026-07-24T20:10:00Z",
			"resources": {"cpus": "2", "memory_mb": 4096, "gpu_memory_mb": 24576}}}}`)

	drift, err := tlwebhook.CheckDrift(payload)
	if err != nil {
		log.Fatal(err) // not a valid JSON object
	}
	for _, d := range drift {
		fmt.Println(d, "breaking:", d.Breaking())
	}

	// With breaking drift, ParseEvent returns the payload as an
	// *UnknownEvent and an error wrapping ErrSchemaDrift.
	ev, err := tlwebhook.ParseEvent(payload)
	fmt.Println(errors.Is(err, tlwebhook.ErrSchemaDrift), ev.Type())
	// Output:
	// tensorlake.sandbox.failed /data/sandbox/outcome_reason new_value "cosmic_rays" breaking: false
	// tensorlake.sandbox.failed /data/sandbox/resources/cpus wrong_kind breaking: true
	// tensorlake.sandbox.failed /data/sandbox/resources/gpu_memory_mb new_member breaking: false
	// true tensorlake.sandbox.failed
}
