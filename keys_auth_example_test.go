package tlwebhook_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// An endpoint configured with asymmetric signatures gives the receiver a
// public key (whpk_...): deliveries carry v1a (Ed25519) signatures, and a
// leaked receiver configuration cannot sign anything. In tests,
// tlwebhooktest.NewKeyPair stands in for the endpoint's key pair.
func ExampleNewHandler_publicKey() {
	signingKey, publicKey := tlwebhooktest.NewKeyPair() // Svix holds the signing key

	h, err := tlwebhook.NewHandler(publicKey)
	if err != nil {
		log.Fatal(err)
	}
	h.OnSandboxEvent(func(ctx context.Context, ev *tlwebhook.SandboxEvent) error {
		fmt.Println(ev.Type(), ev.Data.Sandbox.ID)
		return nil
	})

	req := tlwebhooktest.NewRequest(signingKey, "/webhooks/tensorlake", tlwebhooktest.Sample(tlwebhook.EventTypeSandboxFailed))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output:
	// tensorlake.sandbox.failed 9q2j1f4n6y8x0r3k5m7pa
	// 204
}

// While an endpoint moves from an HMAC secret to a key pair (or back),
// accept both: a delivery verifies when any of its signatures matches any
// configured key.
func ExampleWithSecrets_hmacToPublicKey() {
	oldSecret := tlwebhooktest.NewSecret()              // whsec_..., being retired
	signingKey, publicKey := tlwebhooktest.NewKeyPair() // whpk_..., its replacement

	v, err := tlwebhook.NewVerifier(oldSecret, tlwebhook.WithSecrets(publicKey))
	if err != nil {
		log.Fatal(err)
	}
	body := []byte(`{"event_type":"tensorlake.application.created"}`)
	for _, key := range []string{oldSecret, signingKey} {
		s, _ := tlwebhooktest.NewSigner(key)
		_, err := v.Verify(body, s.Header(body))
		fmt.Println(err)
	}
	// Output:
	// <nil>
	// <nil>
}

// Credentials in the endpoint URL (https://user:password@host/path) arrive
// as Authorization: Basic; WithBasicAuth checks them before the body is
// read. The signature is still checked: authentication supplements it.
func ExampleWithBasicAuth_urlCredentials() {
	secret := tlwebhooktest.NewSecret()
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithBasicAuth("tensorlake", "a long random password"))
	if err != nil {
		log.Fatal(err)
	}

	body := tlwebhooktest.Sample(tlwebhook.EventTypeJobCreated)
	withAuth := tlwebhooktest.NewRequest(secret, "/webhooks/tensorlake", body)
	withAuth.SetBasicAuth("tensorlake", "a long random password")
	without := tlwebhooktest.NewRequest(secret, "/webhooks/tensorlake", body)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, withAuth)
	fmt.Println(rec.Code)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, without)
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output:
	// 204
	// 401 webhook authentication failed
}

// A custom endpoint header (a token a gateway requires, say) is checked
// with WithHeaderAuth, on a Handler or, as here, a Verifier's Middleware;
// several requirements must all be met.
func ExampleWithHeaderAuth_gatewayToken() {
	secret := tlwebhooktest.NewSecret()
	v, err := tlwebhook.NewVerifier(secret,
		tlwebhook.WithHeaderAuth("X-Gateway-Token", "a long random token"))
	if err != nil {
		log.Fatal(err)
	}
	mw := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))

	body := tlwebhooktest.Sample(tlwebhook.EventTypeJobCreated)
	withToken := tlwebhooktest.NewRequest(secret, "/webhooks/tensorlake", body)
	withToken.Header.Set("X-Gateway-Token", "a long random token")
	without := tlwebhooktest.NewRequest(secret, "/webhooks/tensorlake", body)

	rec := httptest.NewRecorder()
	mw.ServeHTTP(rec, withToken)
	fmt.Println(rec.Code)
	rec = httptest.NewRecorder()
	mw.ServeHTTP(rec, without)
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output:
	// 204
	// 401 webhook authentication failed
}
