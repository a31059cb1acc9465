package frameworks_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tlwebhook/tlwebhook/examples/frameworks"
)

// TestTrapTrailingSlash shows the two ways a path mismatch loses deliveries
// with ServeMux: a pattern ending in "/" answers 307 to the URL without it
// (Svix does not follow redirects: a failed delivery), and a URL ending in
// "/" under a pattern without it is a plain 404.
func TestTrapTrailingSlash(t *testing.T) {
	tests := []struct {
		name, pattern, url string
		status             int
		location           string
	}{
		{"pattern with slash, URL without", "POST " + frameworks.Path + "/", frameworks.Path, http.StatusTemporaryRedirect, frameworks.Path + "/"},
		{"pattern without slash, URL with", "POST " + frameworks.Path, frameworks.Path + "/", http.StatusNotFound, ""},
		{"exact match", "POST " + frameworks.Path, frameworks.Path, http.StatusNoContent, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, secret, ran := newHandler(t)
			mux := http.NewServeMux()
			mux.Handle(tt.pattern, h)
			srv := httptest.NewServer(mux)
			defer srv.Close()

			status, location := deliver(t, srv.URL+tt.url, secret, jobCompleted)
			if status != tt.status || location != tt.location {
				t.Fatalf("status %d, Location %q; want %d, %q", status, location, tt.status, tt.location)
			}
			id := callbackRan(ran)
			if want := tt.status == http.StatusNoContent; (id != "") != want {
				t.Fatalf("callback ran: %v, want %v", id != "", want)
			}
		})
	}
}

// TestTrapBodyMiddleware shows middleware placed before the handler: one that
// reads the body and leaves it consumed, or re-encodes the JSON, makes every
// delivery fail with 401 (the signature covers the bytes sent); one that puts
// the same bytes back is harmless.
func TestTrapBodyMiddleware(t *testing.T) {
	consume := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body) // e.g. a request logger
			next.ServeHTTP(w, r)
		})
	}
	reencode := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var v any
			_ = json.NewDecoder(r.Body).Decode(&v) // e.g. a JSON binding layer
			b, _ := json.Marshal(v)                // keys sorted, spacing changed
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.ContentLength = int64(len(b))
			next.ServeHTTP(w, r)
		})
	}
	restore := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b)) // the same bytes, put back
			next.ServeHTTP(w, r)
		})
	}
	tests := []struct {
		name       string
		middleware func(http.Handler) http.Handler
		status     int
	}{
		{"reads the body", consume, http.StatusUnauthorized},
		{"re-encodes the JSON", reencode, http.StatusUnauthorized},
		{"puts the bytes back", restore, http.StatusNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, secret, ran := newHandler(t)
			srv := httptest.NewServer(frameworks.Chi(tt.middleware(h)))
			defer srv.Close()

			if status, _ := deliver(t, srv.URL+frameworks.Path, secret, jobCompleted); status != tt.status {
				t.Fatalf("status %d, want %d", status, tt.status)
			}
			id := callbackRan(ran)
			if want := tt.status == http.StatusNoContent; (id != "") != want {
				t.Fatalf("callback ran: %v, want %v", id != "", want)
			}
		})
	}
}
