package frameworks_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/examples/frameworks"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	os.Exit(m.Run())
}

// jobCompleted is a tensorlake.document_ingestion.job.completed body as
// Tensorlake sends it.
var jobCompleted = []byte(`{"job_id":"parse_XXX","status":"successful",` +
	`"created_at":"2023-10-01T12:00:00Z","finished_at":"2023-10-01T12:05:00Z",` +
	`"usage":{"pages_parsed":10}}`)

var routers = []struct {
	name  string
	mount func(http.Handler) http.Handler
}{
	{"ServeMux", frameworks.ServeMux},
	{"chi", frameworks.Chi},
	{"gin", frameworks.Gin},
	{"echo", frameworks.Echo},
	{"gorilla/mux", frameworks.GorillaMux},
}

// newHandler returns a Handler for a fresh secret, that secret, and a
// channel receiving the job id of every JobCompleted callback run.
func newHandler(t *testing.T) (*tlwebhook.Handler, string, chan string) {
	t.Helper()
	secret := tlwebhooktest.NewSecret()
	h, err := tlwebhook.NewHandler(secret)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan string, 10)
	h.OnJobCompleted(func(_ context.Context, ev *tlwebhook.JobCompleted) error {
		ran <- ev.JobID
		return nil
	})
	return h, secret, ran
}

// deliver POSTs body to url, signed with secret as Svix signs it, without
// following redirects, and returns the response status and Location.
func deliver(t *testing.T, url, secret string, body []byte) (int, string) {
	t.Helper()
	signer, err := tlwebhooktest.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = signer.Header(body)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // Svix does not follow redirects either
	}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Location")
}

// callbackRan reports the job id the callback received, or "" if it did not
// run. The Handler runs callbacks before it answers, so no waiting is needed.
func callbackRan(ran chan string) string {
	select {
	case id := <-ran:
		return id
	default:
		return ""
	}
}

func TestRouters(t *testing.T) {
	for _, r := range routers {
		t.Run(r.name, func(t *testing.T) {
			h, secret, ran := newHandler(t)
			srv := httptest.NewServer(r.mount(h))
			defer srv.Close()

			if status, _ := deliver(t, srv.URL+frameworks.Path, secret, jobCompleted); status != http.StatusNoContent {
				t.Fatalf("signed delivery: status %d, want 204", status)
			}
			if id := callbackRan(ran); id != "parse_XXX" {
				t.Fatalf("signed delivery: callback got job id %q, want parse_XXX", id)
			}

			// The same delivery signed with another secret is refused
			// through the router too, and runs nothing.
			if status, _ := deliver(t, srv.URL+frameworks.Path, tlwebhooktest.NewSecret(), jobCompleted); status != http.StatusUnauthorized {
				t.Fatalf("wrong secret: status %d, want 401", status)
			}
			if id := callbackRan(ran); id != "" {
				t.Fatalf("wrong secret: callback ran for %q", id)
			}
		})
	}
}
