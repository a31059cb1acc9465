package tlwebhooktest_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// A test of a webhook handler: a fresh secret, the handler under test, a
// sample payload in a signed request, and a recorder for the answer.
func Example() {
	secret := tlwebhooktest.NewSecret()
	h, _ := tlwebhook.NewHandler(secret)
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		fmt.Println("job", ev.JobID, "parsed", ev.Usage.PagesParsed, "pages")
		return nil
	})
	req := tlwebhooktest.NewRequest(secret, "/webhooks/tensorlake", tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output:
	// job parse_XXX parsed 10 pages
	// 204
}

// Sign computes the svix-signature header value; this is the known-answer
// vector of Svix's documentation.
func ExampleSigner_Sign() {
	s, err := tlwebhooktest.NewSigner("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`)))
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}

// Setting Now makes a delivery signed an hour ago, which a Handler rejects
// without running any callback.
func ExampleSigner_stale() {
	secret := tlwebhooktest.NewSecret()
	h, _ := tlwebhook.NewHandler(secret)
	s, _ := tlwebhooktest.NewSigner(secret)
	s.Now = func() time.Time { return time.Now().Add(-time.Hour) }

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, s.NewRequest("/webhooks/tensorlake", tlwebhooktest.Sample(tlwebhook.EventTypeJobCreated)))
	fmt.Println(rec.Code)
	// Output: 401
}

// A FakeClock drives the clock options of a test: here, a Signer's and a
// Handler's, so that a delivery is signed and checked at a date of the
// test's choosing.
func ExampleFakeClock() {
	clock := tlwebhooktest.NewFakeClock(time.Date(2026, 7, 24, 20, 0, 0, 0, time.UTC))
	secret := tlwebhooktest.NewSecret()
	h, _ := tlwebhook.NewHandler(secret, tlwebhook.WithClock(clock.Now))
	h.OnJobCompleted(func(context.Context, *tlwebhook.JobCompleted) error {
		fmt.Println("callback at", clock.Now().Format(time.TimeOnly))
		return nil
	})
	signer, _ := tlwebhooktest.NewSigner(secret)
	signer.Now = clock.Now

	req := signer.NewRequest("/webhooks/tensorlake", tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output:
	// callback at 20:00:00
	// 204
}
