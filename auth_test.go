package tlwebhook

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/tlwebhook/tlwebhook/internal/testutil"
)

// Tests of additional authentication (WithBasicAuth, WithHeaderAuth).
//
// Constant time, by code review (auth.go, authCheck.check and checkAuth):
// the expected value is stored only as its SHA-256 digest, and the
// received value is hashed before subtle.ConstantTimeCompare compares the
// two 32-byte digests, so neither an early exit nor the expected value's
// length shows in the time taken; checkAuth runs every check whatever the
// outcome of the others. A timing test would be flaky on shared machines;
// TestAuthKeepsOnlyDigests checks the part that can be observed: no
// plain credential is kept to compare with.

const (
	authUser     = "tensorlake-user"
	authPassword = "pa55:word-with-colon"
	authToken    = "gw-token-8f1d2c7a"
	authToken2   = "second-token-55e0"
	authSecret   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	authBody     = `{"job_id":"parse_auth","status":"pending","created_at":"2024-01-01T00:00:00Z"}`
)

// credentials are the strings that must never appear in a log line or a
// response: the secrets themselves and the encoded forms a request carries.
var credentials = []string{
	authPassword, authToken, authToken2,
	base64.StdEncoding.EncodeToString([]byte(authUser + ":" + authPassword)),
	base64.StdEncoding.EncodeToString([]byte(authUser + ":wrong")),
	"wrong-token",
}

func basicValue(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// readRecorder is a request body that records whether anything read it.
type readRecorder struct {
	r    io.Reader
	read atomic.Bool
}

func (b *readRecorder) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.r.Read(p)
}

func (b *readRecorder) Close() error { return nil }

// logCapture is a JSON slog handler writing to a buffer, at debug level.
type logCapture struct{ testutil.SyncBuffer }

func (c *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// observations records a Handler's Observations.
type observations struct {
	mu   sync.Mutex
	list []Observation
}

func (o *observations) Observe(_ context.Context, ob Observation) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.list = append(o.list, ob)
}

func (o *observations) last() Observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.list) == 0 {
		return Observation{}
	}
	return o.list[len(o.list)-1]
}

// signedAuthRequest returns a request for authBody signed with svix's
// library, with extra headers, and the body that records reads.
func signedAuthRequest(t *testing.T, extra http.Header) (*http.Request, *readRecorder) {
	t.Helper()
	wh, err := svix.NewWebhook(authSecret)
	require.NoError(t, err)
	now := time.Now()
	sig, err := wh.Sign("msg_auth", now, []byte(authBody))
	require.NoError(t, err)
	body := &readRecorder{r: strings.NewReader(authBody)}
	req := httptest.NewRequest(http.MethodPost, "/webhooks/tensorlake", nil)
	req.Body = body
	req.ContentLength = int64(len(authBody))
	req.Header.Set(HeaderSvixID, "msg_auth")
	req.Header.Set(HeaderSvixTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSvixSignature, sig)
	for k, vs := range extra {
		req.Header[k] = vs
	}
	return req, body
}

func TestAuth(t *testing.T) {
	basic := WithBasicAuth(authUser, authPassword)
	token := WithHeaderAuth("X-Gateway-Token", authToken)
	token2 := WithHeaderAuth("x-second-token", authToken2) // not canonical: canonicalised
	right := http.Header{
		"Authorization":   {basicValue(authUser, authPassword)},
		"X-Gateway-Token": {authToken},
		"X-Second-Token":  {authToken2},
	}
	without := func(names ...string) http.Header {
		h := right.Clone()
		for _, n := range names {
			h.Del(n)
		}
		return h
	}
	with := func(name, value string) http.Header {
		h := right.Clone()
		h.Set(name, value)
		return h
	}
	configs := []struct {
		name string
		opts []VerifierOption
	}{
		{"basic", []VerifierOption{basic}},
		{"header", []VerifierOption{token}},
		{"two headers", []VerifierOption{token, token2}},
		{"basic and header", []VerifierOption{basic, token}},
	}
	requests := []struct {
		name string
		hdr  http.Header
		ok   map[string]bool // configurations that accept it
	}{
		{"all credentials", right, map[string]bool{"basic": true, "header": true, "two headers": true, "basic and header": true}},
		{"no credentials", http.Header{}, nil},
		{"lower-case basic scheme", with("Authorization", "basic "+strings.TrimPrefix(basicValue(authUser, authPassword), "Basic ")),
			map[string]bool{"basic": true, "header": true, "two headers": true, "basic and header": true}},
		{"wrong password", with("Authorization", basicValue(authUser, "wrong")), map[string]bool{"header": true, "two headers": true}},
		{"wrong user", with("Authorization", basicValue("someone", authPassword)), map[string]bool{"header": true, "two headers": true}},
		{"password with a trailing byte", with("Authorization", basicValue(authUser, authPassword+"x")), map[string]bool{"header": true, "two headers": true}},
		{"bearer instead of basic", with("Authorization", "Bearer "+authPassword), map[string]bool{"header": true, "two headers": true}},
		{"no authorization", without("Authorization"), map[string]bool{"header": true, "two headers": true}},
		{"wrong token", with("X-Gateway-Token", "wrong-token"), map[string]bool{"basic": true}},
		{"token prefix only", with("X-Gateway-Token", authToken[:len(authToken)-1]), map[string]bool{"basic": true}},
		{"token in another header", without("X-Gateway-Token"), map[string]bool{"basic": true}},
		{"first token only", without("X-Second-Token"), map[string]bool{"basic": true, "header": true, "basic and header": true}},
		{"second token only", without("X-Gateway-Token"), map[string]bool{"basic": true}},
		{"tokens swapped", with("X-Gateway-Token", authToken2), map[string]bool{"basic": true}},
		{"token first of two values", func() http.Header {
			h := right.Clone()
			h["X-Gateway-Token"] = []string{authToken, "wrong-token"}
			return h
		}(), map[string]bool{"basic": true, "header": true, "two headers": true, "basic and header": true}},
		{"token second of two values", func() http.Header {
			h := right.Clone()
			h["X-Gateway-Token"] = []string{"wrong-token", authToken}
			return h
		}(), map[string]bool{"basic": true}},
	}
	for _, cfg := range configs {
		for _, rq := range requests {
			want := rq.ok[cfg.name]
			t.Run(cfg.name+"/"+rq.name+"/Handler", func(t *testing.T) {
				logs := &logCapture{}
				obs := &observations{}
				opts := []HandlerOption{WithLogger(logs.logger()), WithObserver(obs)}
				for _, o := range cfg.opts {
					opts = append(opts, o)
				}
				h, err := NewHandler(authSecret, opts...)
				require.NoError(t, err)
				var calls atomic.Int64
				h.OnAny(func(context.Context, Event) error { calls.Add(1); return nil })
				req, body := signedAuthRequest(t, rq.hdr)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if want {
					assert.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
					assert.Equal(t, int64(1), calls.Load())
					return
				}
				assertUnauthorized(t, rec, body, logs)
				assert.Zero(t, calls.Load(), "callback ran")
				ob := obs.last()
				assert.Equal(t, DeliveryRejected, ob.Outcome)
				assert.Equal(t, http.StatusUnauthorized, ob.Status)
				require.ErrorIs(t, ob.Err, ErrUnauthorized)
				assertNoCredential(t, ob.Err.Error(), "observed error")
			})
			t.Run(cfg.name+"/"+rq.name+"/Middleware", func(t *testing.T) {
				logs := &logCapture{}
				v, err := NewVerifier(authSecret, append([]VerifierOption{WithLogger(logs.logger())}, cfg.opts...)...)
				require.NoError(t, err)
				var calls atomic.Int64
				var got []byte
				mw := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					calls.Add(1)
					got, _ = io.ReadAll(r.Body)
					w.WriteHeader(http.StatusOK)
				}))
				req, body := signedAuthRequest(t, rq.hdr)
				rec := httptest.NewRecorder()
				mw.ServeHTTP(rec, req)
				if want {
					assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
					assert.Equal(t, authBody, string(got))
					return
				}
				assertUnauthorized(t, rec, body, logs)
				assert.Zero(t, calls.Load(), "next ran")
				assert.Contains(t, logs.String(), ErrUnauthorized.Error())
			})
		}
	}
}

// assertUnauthorized checks a refused request: 401, the fixed text, the
// body never read, and no credential in the answer or the logs.
func assertUnauthorized(t *testing.T, rec *httptest.ResponseRecorder, body *readRecorder, logs *logCapture) {
	t.Helper()
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Equal(t, "webhook authentication failed\n", rec.Body.String())
	assert.False(t, body.read.Load(), "the body was read")
	resp := fmt.Sprint(rec.Header(), rec.Body.String())
	assertNoCredential(t, resp, "response")
	out := logs.String()
	assert.Contains(t, out, `"status":401`)
	assertNoCredential(t, out, "log")
}

func assertNoCredential(t *testing.T, s, what string) {
	t.Helper()
	for _, c := range credentials {
		assert.NotContains(t, s, c, "%s reveals a credential", what)
	}
}

// TestAuthBeforeSignature shows the order of the checks: authentication
// first (its failure is what a request without credentials gets, whatever
// its signature), then the signature, which authentication never replaces.
func TestAuthBeforeSignature(t *testing.T) {
	h, err := NewHandler(authSecret, WithHeaderAuth("X-Gateway-Token", authToken), WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	var calls atomic.Int64
	h.OnAny(func(context.Context, Event) error { calls.Add(1); return nil })
	tests := []struct {
		name     string
		mutate   func(*http.Request)
		status   int
		text     string
		bodyRead bool
	}{
		{"right token, no signature headers", func(r *http.Request) {
			r.Header.Set("X-Gateway-Token", authToken)
			r.Header.Del(HeaderSvixSignature)
		}, http.StatusUnauthorized, "missing webhook signature headers\n", false},
		{"right token, forged signature", func(r *http.Request) {
			r.Header.Set("X-Gateway-Token", authToken)
			r.Header.Set(HeaderSvixSignature, "v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32)))
		}, http.StatusUnauthorized, "invalid webhook signature\n", true},
		{"wrong token, no signature headers", func(r *http.Request) {
			r.Header.Set("X-Gateway-Token", "wrong-token")
			r.Header.Del(HeaderSvixSignature)
		}, http.StatusUnauthorized, "webhook authentication failed\n", false},
		{"wrong token, valid signature", func(r *http.Request) {
			r.Header.Set("X-Gateway-Token", "wrong-token")
		}, http.StatusUnauthorized, "webhook authentication failed\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, body := signedAuthRequest(t, nil)
			tt.mutate(req)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, tt.status, rec.Code)
			assert.Equal(t, tt.text, rec.Body.String())
			assert.Equal(t, tt.bodyRead, body.read.Load(), "body read")
		})
	}
	assert.Zero(t, calls.Load())
}

// TestCheckAuth calls checkAuth directly: every requirement must pass, the
// error wraps ErrUnauthorized and names what failed, never the value.
func TestCheckAuth(t *testing.T) {
	v, err := NewVerifier(authSecret,
		WithHeaderAuth("X-A", authToken), WithHeaderAuth("X-B", authToken2), WithBasicAuth(authUser, authPassword))
	require.NoError(t, err)
	all := http.Header{"X-A": {authToken}, "X-B": {authToken2}, "Authorization": {basicValue(authUser, authPassword)}}
	require.NoError(t, v.http.checkAuth(all))
	tests := []struct {
		name, drop, wantLabel string
	}{
		{"first missing", "X-A", "header X-A failed"},
		{"second missing", "X-B", "header X-B failed"},
		{"basic missing", "Authorization", "basic authentication failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := all.Clone()
			h.Del(tt.drop)
			err := v.http.checkAuth(h)
			require.ErrorIs(t, err, ErrUnauthorized)
			assert.Contains(t, err.Error(), tt.wantLabel)
			assertNoCredential(t, err.Error(), "error")
		})
	}
	err = v.http.checkAuth(http.Header{})
	require.ErrorIs(t, err, ErrUnauthorized)
	assert.Contains(t, err.Error(), "header X-A failed", "reports the first failure")
}

// TestAuthKeepsOnlyDigests checks that a configured Verifier or Handler
// keeps no plain credential: everything it compares with is a digest.
func TestAuthKeepsOnlyDigests(t *testing.T) {
	v, err := NewVerifier(authSecret, WithBasicAuth(authUser, authPassword), WithHeaderAuth("X-Gateway-Token", authToken))
	require.NoError(t, err)
	h, err := NewHandler(authSecret, WithBasicAuth(authUser, authPassword), WithHeaderAuth("X-Gateway-Token", authToken))
	require.NoError(t, err)
	for what, s := range map[string]string{
		"verifier config": fmt.Sprintf("%#v %+v", *v.http, v.http.auth),
		"handler":         fmt.Sprintf("%#v %+v %v", h, h, h),
		"verifier":        fmt.Sprintf("%#v %+v %v", v, v, v),
	} {
		assertNoCredential(t, s, what)
		assert.NotContains(t, s, authUser+":", what)
	}
	require.Len(t, v.http.auth, 2)
	for _, a := range v.http.auth {
		assert.NotEqual(t, [32]byte{}, a.want)
	}
}

func TestAuthOptionErrors(t *testing.T) {
	tests := []struct {
		name    string
		opt     VerifierOption
		wantMsg string
	}{
		{"basic: empty user and password", WithBasicAuth("", ""), "WithBasicAuth: empty user and password"},
		{"basic: user with a colon", WithBasicAuth("a:b", authPassword), "WithBasicAuth: the user contains a colon"},
		{"header: empty name", WithHeaderAuth("", authToken), "WithHeaderAuth: empty header name or value"},
		{"header: blank name", WithHeaderAuth("  ", authToken), "WithHeaderAuth: empty header name or value"},
		{"header: empty value", WithHeaderAuth("X-Token", ""), "WithHeaderAuth: empty header name or value"},
		{"header: svix-signature", WithHeaderAuth("svix-signature", authToken), "Svix-Signature is a signature header"},
		{"header: webhook-id in upper case", WithHeaderAuth("WEBHOOK-ID", authToken), "Webhook-Id is a signature header"},
		{"header: name with a space", WithHeaderAuth("X Token", authToken), "is not a valid header name"},
		{"header: name with a colon", WithHeaderAuth("X-Token:", authToken), "is not a valid header name"},
		{"header: value with a leading space", WithHeaderAuth("X-Token", " "+authToken), "surrounding white space or control characters"},
		{"header: value with a trailing tab", WithHeaderAuth("X-Token", authToken+"\t"), "surrounding white space or control characters"},
		{"header: value with a newline", WithHeaderAuth("X-Token", authToken+"\nX-Other: 1"), "surrounding white space or control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerifier(authSecret, tt.opt)
			require.ErrorIs(t, err, ErrInvalidOption)
			assert.Contains(t, err.Error(), tt.wantMsg)
			assertNoCredential(t, err.Error(), "NewVerifier error")
			_, err = NewHandler(authSecret, tt.opt)
			require.ErrorIs(t, err, ErrInvalidOption)
			assert.False(t, errors.Is(err, ErrUnauthorized))
		})
	}
	t.Run("values that are fine", func(t *testing.T) {
		for _, opt := range []VerifierOption{
			WithBasicAuth("", authPassword), // an empty user is allowed, as in https://:pw@host
			WithBasicAuth(authUser, ""),
			WithHeaderAuth(" X-Token ", "a b\tc"), // inner white space
			WithHeaderAuth("x-custom_header.v2~", authToken),
		} {
			_, err := NewVerifier(authSecret, opt)
			assert.NoError(t, err)
		}
	})
}
