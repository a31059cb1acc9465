package tlwebhook_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/tlwebhook/tlwebhook"
)

func ExampleHandler() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // the endpoint's signing secret

	h, err := tlwebhook.NewHandler(secret)
	if err != nil {
		log.Fatal(err)
	}
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		d, _ := tlwebhook.DeliveryFromContext(ctx)
		fmt.Printf("%s: job %s parsed %d pages\n", d.ID, ev.JobID, ev.Usage.PagesParsed)
		return nil
	})

	// A delivery as Svix sends it, signed with Svix's own library.
	body := `{"job_id":"parse_123","status":"successful","created_at":"2026-11-26T10:00:00Z",` +
		`"finished_at":"2026-11-26T10:00:09Z","usage":{"pages_parsed":12}}`
	now := time.Now()
	wh, _ := svix.NewWebhook(secret)
	sig, _ := wh.Sign("msg_1", now, []byte(body))
	req := httptest.NewRequest(http.MethodPost, "/webhooks/tensorlake", strings.NewReader(body))
	req.Header.Set("svix-id", "msg_1")
	req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("svix-signature", sig)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output:
	// msg_1: job parse_123 parsed 12 pages
	// 204
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
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	v, err := tlwebhook.NewVerifier(secret)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/webhooks/tensorlake", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only verified deliveries get here; the body is still readable.
		d, _ := tlwebhook.DeliveryFromContext(r.Context())
		body, _ := io.ReadAll(r.Body)
		ev, err := tlwebhook.ParseEvent(body)
		if err != nil {
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		fmt.Println("received", d.ID, ev.Type())
		w.WriteHeader(http.StatusNoContent)
	})))

	body := `{"event_id":"evt_1","event_type":"tensorlake.application.created","event_version":1}`
	now := time.Now()
	wh, _ := svix.NewWebhook(secret)
	sig, _ := wh.Sign("msg_2", now, []byte(body))

	signed := httptest.NewRequest(http.MethodPost, "/webhooks/tensorlake", strings.NewReader(body))
	signed.Header.Set("svix-id", "msg_2")
	signed.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	signed.Header.Set("svix-signature", sig)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, signed)
	fmt.Println(rec.Code)

	// The same body without signature headers never reaches the handler.
	unsigned := httptest.NewRequest(http.MethodPost, "/webhooks/tensorlake", strings.NewReader(body))
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, unsigned)
	fmt.Println(rec.Code)
	// Output:
	// received msg_2 tensorlake.application.created
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
	// Output:
	// tensorlake.sandbox.failed 9q2j1f4n6y8x0r3k5m7pa terminated
	// reason: out_of_memory
}
