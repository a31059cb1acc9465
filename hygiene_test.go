package tlwebhook_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	tl "github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/internal/testutil"
)

// Keys of the hygiene tests: printable, so that a raw copy of the key would
// be visible in text output too.
var (
	hygieneKey1 = []byte("hygiene-key-ONE-0123456789abcdef")
	hygieneKey2 = []byte("hygiene-key-TWO-fedcba9876543210")
)

func hygieneSecret(key []byte) string { return "whsec_" + base64.StdEncoding.EncodeToString(key) }

// keyForms returns every spelling of the keys that must never be output:
// the secrets as configured, their base64 part, the raw key bytes, and the
// keys in hex and other base64 alphabets.
func keyForms() []string {
	var out []string
	for _, k := range [][]byte{hygieneKey1, hygieneKey2} {
		out = append(out,
			hygieneSecret(k),
			base64.StdEncoding.EncodeToString(k),
			base64.RawStdEncoding.EncodeToString(k),
			base64.URLEncoding.EncodeToString(k),
			string(k),
			hex.EncodeToString(k),
			strings.ToUpper(hex.EncodeToString(k)),
			fmt.Sprintf("% x", k),
			fmt.Sprint(k), // [104 121 ...], as %v prints a []byte
		)
	}
	return out
}

// assertNoneOf fails if text contains any of forbidden, naming where and
// which entry without printing either, so that a failure does not itself
// spread the secret.
func assertNoneOf(t *testing.T, where, text string, forbidden []string) {
	t.Helper()
	var leaked []int
	for i, s := range forbidden {
		if strings.Contains(text, s) {
			leaked = append(leaked, i)
		}
	}
	assert.Emptyf(t, leaked, "%s reveals forbidden strings (indexes into the forbidden list)", where)
}

// failingDedup is a deduplicator whose store is down.
type failingDedup struct{}

func (failingDedup) Claim(context.Context, string) (string, tl.ClaimResult, error) {
	return "", 0, errors.New("store unreachable")
}
func (failingDedup) Complete(context.Context, string, string) error { return nil }
func (failingDedup) Release(context.Context, string, string) error  { return nil }

// TestHygieneResponsesAndLogs runs every kind of rejection and every
// callback outcome, with a JSON logger at debug level, and checks that no
// response and no log line contains a key or a signature computed for the
// request, under either accepted secret.
func TestHygieneResponsesAndLogs(t *testing.T) {
	secret1, secret2 := hygieneSecret(hygieneKey1), hygieneSecret(hygieneKey2)
	wh1, wh2 := advWebhook(t, secret1), advWebhook(t, secret2)
	foreign := advWebhook(t, "whsec_"+base64.StdEncoding.EncodeToString([]byte("some-other-key-0123456789abcdef!")))
	body := []byte(advJob)
	now := time.Now().Unix()

	type request struct {
		method   string
		id       string
		ts       int64
		tsHeader string // overrides ts in the header when set
		sig      func(id string, ts int64, body []byte) string
		body     []byte
		chunked  bool
		declared int64
		remote   string
	}
	validSig := func(id string, ts int64, b []byte) string { return advSign(t, wh1, id, ts, b) }
	cases := []struct {
		name     string
		req      request
		opts     []tl.HandlerOption
		callback func(context.Context) error
		want     int
	}{
		{"method", request{method: http.MethodGet, sig: validSig}, nil, nil, http.StatusMethodNotAllowed},
		{"declared length", request{sig: validSig, declared: 2 << 20}, nil, nil, http.StatusRequestEntityTooLarge},
		{"streamed length", request{sig: validSig, body: bytes.Repeat([]byte(" "), 2<<20), chunked: true}, nil, nil, http.StatusRequestEntityTooLarge},
		{"missing headers", request{sig: func(string, int64, []byte) string { return "" }}, nil, nil, http.StatusUnauthorized},
		{"malformed timestamp", request{tsHeader: "yesterday", sig: validSig}, nil, nil, http.StatusUnauthorized},
		{"too old", request{ts: now - 3600, sig: validSig}, nil, nil, http.StatusUnauthorized},
		{"too new", request{ts: now + 3600, sig: validSig}, nil, nil, http.StatusUnauthorized},
		{"forged signature", request{sig: func(string, int64, []byte) string { return "v1," + strings.Repeat("A", 43) + "=" }}, nil, nil, http.StatusUnauthorized},
		{"foreign secret", request{sig: func(id string, ts int64, b []byte) string { return advSign(t, foreign, id, ts, b) }}, nil, nil, http.StatusUnauthorized},
		{"only v2 entries", request{sig: func(id string, ts int64, b []byte) string {
			return "v2" + strings.TrimPrefix(validSig(id, ts, b), "v1")
		}}, nil, nil, http.StatusUnauthorized},
		{"signature over another body", request{sig: func(id string, ts int64, _ []byte) string { return validSig(id, ts, []byte("{}")) }}, nil, nil, http.StatusUnauthorized},
		{"source not allowed", request{sig: validSig, remote: "198.51.100.7:1"}, []tl.HandlerOption{tl.WithAllowedSources(tl.SvixSourcesUS()...)}, nil, http.StatusForbidden},
		{"not an object", request{sig: validSig, body: []byte(`["x"]`)}, nil, nil, http.StatusBadRequest},
		{"wrong field type, no OnUnknown", request{sig: validSig, body: []byte(`{"job_id":1,"status":"pending","created_at":"2023-10-01T12:00:00Z"}`)}, nil, nil, http.StatusInternalServerError},
		{"accepted", request{sig: validSig}, nil, func(context.Context) error { return nil }, http.StatusNoContent},
		{"accepted under the second secret", request{sig: func(id string, ts int64, b []byte) string { return advSign(t, wh2, id, ts, b) }}, nil, func(context.Context) error { return nil }, http.StatusNoContent},
		{"accepted without callback", request{sig: validSig}, nil, nil, http.StatusNoContent},
		{"callback error", request{sig: validSig}, nil, func(context.Context) error { return errors.New("database down") }, http.StatusInternalServerError},
		{"callback permanent error", request{sig: validSig}, nil, func(context.Context) error { return tl.Permanent(errors.New("bad job")) }, http.StatusInternalServerError},
		{"callback panic", request{sig: validSig}, nil, func(context.Context) error { panic("boom") }, http.StatusInternalServerError},
		{"callback timeout", request{sig: validSig}, []tl.HandlerOption{tl.WithCallbackTimeout(10 * time.Millisecond)}, func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(20 * time.Millisecond)
			return ctx.Err()
		}, http.StatusServiceUnavailable},
		{"deduplicator down", request{sig: validSig}, []tl.HandlerOption{tl.WithDeduplicator(failingDedup{})}, func(context.Context) error { return nil }, http.StatusServiceUnavailable},
	}

	forbidden := keyForms()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testutil.SyncBuffer{}
			logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			opts := append([]tl.HandlerOption{tl.WithSecrets(secret2), tl.WithLogger(logger)}, tc.opts...)
			h, err := tl.NewHandler(secret1, opts...)
			require.NoError(t, err)
			if tc.callback != nil {
				h.OnJobCreated(func(ctx context.Context, _ *tl.JobCreated) error { return tc.callback(ctx) })
			}

			r := tc.req
			if r.method == "" {
				r.method = http.MethodPost
			}
			if r.id == "" {
				r.id = "msg_hygiene_" + strconv.Itoa(i)
			}
			if r.ts == 0 {
				r.ts = now
			}
			if r.body == nil {
				r.body = body
			}
			ts := strconv.FormatInt(r.ts, 10)
			if r.tsHeader != "" {
				ts = r.tsHeader
			}
			req := httptest.NewRequest(r.method, "/hook", bytes.NewReader(r.body))
			req.Header.Set(tl.HeaderSvixID, r.id)
			req.Header.Set(tl.HeaderSvixTimestamp, ts)
			if s := r.sig(r.id, r.ts, r.body); s != "" {
				req.Header.Set(tl.HeaderSvixSignature, s)
			}
			if r.chunked {
				req.ContentLength = -1
			}
			if r.declared != 0 {
				req.ContentLength = r.declared
			}
			if r.remote != "" {
				req.RemoteAddr = r.remote
			}

			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			require.Equal(t, tc.want, w.Code)
			if tc.want == http.StatusServiceUnavailable && tc.name == "callback timeout" {
				time.Sleep(50 * time.Millisecond) // let the overrunning callback finish and log
			}

			// What must not appear: the keys, and the signatures of this
			// request under every accepted secret (a forger's target) and
			// under the foreign one.
			secrets := append([]string(nil), forbidden...)
			for _, wh := range []*svix.Webhook{wh1, wh2, foreign} {
				for _, b := range [][]byte{r.body, []byte("{}")} {
					secrets = append(secrets, strings.TrimPrefix(advSign(t, wh, r.id, r.ts, b), "v1,"))
				}
			}
			out := logs.String()
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.NotEmpty(t, strings.TrimSpace(out), "nothing was logged: the check below would be vacuous")
			for _, line := range lines {
				var rec map[string]any
				require.NoError(t, json.Unmarshal([]byte(line), &rec), "log line is not JSON: %s", line)
			}
			assertNoneOf(t, "response body", w.Body.String(), secrets)
			assertNoneOf(t, "log", out, secrets)
			for name, vs := range w.Header() {
				assertNoneOf(t, "response header "+name, strings.Join(vs, "\n"), secrets)
			}
		})
	}
}

// TestHygieneErrors checks the errors of NewVerifier, NewHandler and
// Verify: none quotes a secret or a signature.
func TestHygieneErrors(t *testing.T) {
	t.Run("construction", func(t *testing.T) {
		short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("short-key"))
		for _, bad := range []string{
			"whsec_" + string(hygieneKey1), // not base64: the raw key pasted
			"whsec_" + base64.StdEncoding.EncodeToString(hygieneKey1)[:20] + "!!",
			short,
			" " + short + " ",
		} {
			forbidden := append(keyForms(), strings.TrimPrefix(strings.TrimSpace(bad), "whsec_"))
			_, err := tl.NewVerifier(bad)
			require.ErrorIs(t, err, tl.ErrInvalidSecret)
			assertNoneOf(t, "NewVerifier error", err.Error(), forbidden)
			_, err = tl.NewHandler(hygieneSecret(hygieneKey1), tl.WithSecrets(bad))
			require.ErrorIs(t, err, tl.ErrInvalidSecret)
			assertNoneOf(t, "NewHandler error", err.Error(), forbidden)
		}
	})
	t.Run("verification", func(t *testing.T) {
		v, err := tl.NewVerifier(hygieneSecret(hygieneKey1), tl.WithSecrets(hygieneSecret(hygieneKey2)))
		require.NoError(t, err)
		wh := advWebhook(t, hygieneSecret(hygieneKey1))
		body := []byte(advJob)
		now := time.Now().Unix()
		expected := strings.TrimPrefix(advSign(t, wh, "msg_v", now, body), "v1,")
		headers := map[string]http.Header{
			"forged":    {"Svix-Id": {"msg_v"}, "Svix-Timestamp": {strconv.FormatInt(now, 10)}, "Svix-Signature": {"v1," + strings.Repeat("B", 43) + "="}},
			"stale":     {"Svix-Id": {"msg_v"}, "Svix-Timestamp": {strconv.FormatInt(now-7200, 10)}, "Svix-Signature": {"v1," + expected}},
			"malformed": {"Svix-Id": {"msg_v"}, "Svix-Timestamp": {"x"}, "Svix-Signature": {"v1," + expected}},
		}
		for name, h := range headers {
			_, err := v.Verify(body, h)
			require.Error(t, err, name)
			assertNoneOf(t, name+" error", err.Error(), append(keyForms(), expected))
		}
	})
}

// TestHygienePrinting prints a Verifier and a Handler every usual way and
// checks that no form of the key appears.
func TestHygienePrinting(t *testing.T) {
	secret1, secret2 := hygieneSecret(hygieneKey1), hygieneSecret(hygieneKey2)
	v, err := tl.NewVerifier(secret1, tl.WithSecrets(secret2), tl.WithLogger(discardLogger()))
	require.NoError(t, err)
	h, err := tl.NewHandler(secret1, tl.WithSecrets(secret2), tl.WithLogger(discardLogger()),
		tl.WithAllowedSources(netip.MustParsePrefix("10.0.0.0/8")))
	require.NoError(t, err)
	// Warm the verifiers' pooled MAC states, which hold keyed hashes.
	for _, handler := range []http.Handler{h, v.Middleware(http.NotFoundHandler())} {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(advJob))
		for k, vs := range advHeaders(t, advWebhook(t, secret1), "msg_print", []byte(advJob)) {
			req.Header[k] = vs
		}
		handler.ServeHTTP(httptest.NewRecorder(), req)
	}

	type holder struct {
		Verifier *tl.Verifier
		Handler  *tl.Handler
	}
	// Values of the same types under another secret, for comparisons.
	otherSecret := hygieneSecret([]byte("hygiene-key-XYZ-0123456789abcdef"))
	v2, err := tl.NewVerifier(otherSecret, tl.WithLogger(discardLogger()))
	require.NoError(t, err)
	h2, err := tl.NewHandler(otherSecret, tl.WithLogger(discardLogger()))
	require.NoError(t, err)
	values := []struct {
		name       string
		val, other any
	}{
		{"*Verifier", v, v2},
		{"*Handler", h, h2},
		{"struct holding both", holder{Verifier: v, Handler: h}, holder{Verifier: v2, Handler: h2}},
	}
	for _, tc := range values {
		t.Run(tc.name, func(t *testing.T) {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
				assertNoneOf(t, "fmt "+verb, fmt.Sprintf(verb, tc.val), keyForms())
			}
			for name, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
				"slog JSON": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
				"slog text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
			} {
				var buf bytes.Buffer
				slog.New(newHandler(&buf)).Info("printing", slog.Any("value", tc.val), "bare", tc.val)
				require.NotZero(t, buf.Len())
				assertNoneOf(t, name, buf.String(), keyForms())
			}
			if j, err := json.Marshal(tc.val); err == nil {
				assertNoneOf(t, "encoding/json", string(j), keyForms())
			}
			// A failed testify comparison prints both values in depth.
			ft := &failureCapture{}
			assert.Equal(ft, tc.val, tc.other)
			require.NotEmpty(t, ft.msg)
			assertNoneOf(t, "testify failure message", ft.msg, keyForms())
		})
	}

	// The Stringers describe the configuration (so the output checked
	// above is real output), never the keys.
	assert.Equal(t, "tlwebhook.Verifier{secrets: 2, publicKeys: 0, tolerance: 5m0s, maxBodyBytes: 1048576}", fmt.Sprint(v))
	assert.Equal(t, "tlwebhook.Handler{"+fmt.Sprint(v)+"}", fmt.Sprint(h))
}

// failureCapture is an assert.TestingT that keeps failure messages.
type failureCapture struct{ msg string }

func (f *failureCapture) Errorf(format string, args ...any) { f.msg += fmt.Sprintf(format, args...) }
