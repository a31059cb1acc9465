package tlwebhooktest_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/internal/everycallback"
	"github.com/tlwebhook/tlwebhook/internal/testutil"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// Known-answer vector of Svix's public material.
const (
	katSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	katID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	katTimestamp = 1614265330
	katBody      = `{"test": 2432232314}`
	katSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestNewSecret(t *testing.T) {
	seen := make(map[string]bool)
	for range 50 {
		s := tlwebhooktest.NewSecret()
		require.True(t, strings.HasPrefix(s, "whsec_"), s)
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		require.NoError(t, err)
		require.Len(t, key, 32)
		require.False(t, seen[s], "secret repeated")
		seen[s] = true

		_, err = tlwebhook.NewVerifier(s)
		require.NoError(t, err, "tlwebhook accepts the secret")
		_, err = svix.NewWebhook(s)
		require.NoError(t, err, "svix accepts the secret")
	}
}

func TestNewMessageID(t *testing.T) {
	a, b := tlwebhooktest.NewMessageID(), tlwebhooktest.NewMessageID()
	assert.True(t, strings.HasPrefix(a, "msg_"), a)
	assert.Greater(t, len(a), len("msg_")+16)
	assert.NotEqual(t, a, b)
}

func TestNewSigner(t *testing.T) {
	tests := []struct {
		name    string
		secret  string
		wantErr bool
	}{
		{name: "with prefix", secret: katSecret},
		{name: "without prefix", secret: strings.TrimPrefix(katSecret, "whsec_")},
		{name: "surrounding whitespace", secret: " " + katSecret + "\n"},
		{name: "empty", secret: "", wantErr: true},
		{name: "prefix only", secret: "whsec_", wantErr: true},
		{name: "not base64", secret: "whsec_not*base64", wantErr: true},
		{name: "url-safe alphabet", secret: "whsec_-_-_", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tlwebhooktest.NewSigner(tt.secret)
			if tt.wantErr {
				require.Error(t, err)
				if key := strings.TrimPrefix(tt.secret, "whsec_"); key != "" {
					assert.NotContains(t, err.Error(), key, "error quotes the secret")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, katSignature, s.Sign(katID, time.Unix(katTimestamp, 0), []byte(katBody)))
			assert.NotContains(t, fmt.Sprintf("%v %+v %#v", s, s, s), "MfKQ9r8G", "formatting reveals the key")
		})
	}
}

// TestSignMatchesSvix checks Sign against svix's own Sign and Verify for
// fixed and random inputs.
func TestSignMatchesSvix(t *testing.T) {
	type input struct {
		name, secret, id string
		ts               time.Time
		body             []byte
	}
	inputs := []input{
		{name: "known answer", secret: katSecret, id: katID, ts: time.Unix(katTimestamp, 0), body: []byte(katBody)},
		{name: "empty body", secret: katSecret, id: "msg_1", ts: time.Unix(1, 0), body: nil},
		{name: "sub-second time truncated", secret: katSecret, id: "msg_2", ts: time.Unix(1700000000, 999_999_999), body: []byte("{}")},
		{name: "negative time", secret: katSecret, id: "msg_3", ts: time.Unix(-5, 0), body: []byte("{}")},
		{name: "binary body", secret: katSecret, id: "msg_4", ts: time.Unix(1700000000, 0), body: []byte{0, 0xff, '\n', '\r'}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 100 {
		body := make([]byte, rng.IntN(300))
		for j := range body {
			body[j] = byte(rng.Uint32())
		}
		inputs = append(inputs, input{
			name:   fmt.Sprintf("random %d", i),
			secret: tlwebhooktest.NewSecret(),
			id:     "msg_" + strconv.FormatUint(rng.Uint64(), 36),
			ts:     time.Unix(rng.Int64N(4_000_000_000), 0),
			body:   body,
		})
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			s, err := tlwebhooktest.NewSigner(in.secret)
			require.NoError(t, err)
			wh, err := svix.NewWebhook(in.secret)
			require.NoError(t, err)

			got := s.Sign(in.id, in.ts, in.body)
			want, err := wh.Sign(in.id, in.ts, in.body)
			require.NoError(t, err)
			assert.Equal(t, want, got)

			h := s.HeaderFor(in.id, in.ts, in.body)
			assert.Equal(t, in.id, h.Get("svix-id"))
			assert.Equal(t, strconv.FormatInt(in.ts.Unix(), 10), h.Get("svix-timestamp"))
			assert.NoError(t, wh.VerifyIgnoringTimestamp(in.body, h), "svix accepts the headers")
		})
	}
}

func TestHeaderVerifiesWithSvix(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	s, err := tlwebhooktest.NewSigner(secret)
	require.NoError(t, err)
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	other, err := svix.NewWebhook(tlwebhooktest.NewSecret())
	require.NoError(t, err)

	body := tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)
	h1, h2 := s.Header(body), s.Header(body)
	require.NoError(t, wh.Verify(body, h1))
	require.NoError(t, wh.Verify(body, h2))
	assert.Error(t, other.Verify(body, h1), "another secret's verifier accepts the headers")
	assert.Error(t, wh.Verify(append(body, ' '), h1), "svix accepts a changed body")
	assert.NotEqual(t, h1.Get("svix-id"), h2.Get("svix-id"), "Header reuses the message id")

	ts, err := strconv.ParseInt(h1.Get("svix-timestamp"), 10, 64)
	require.NoError(t, err)
	assert.InDelta(t, time.Now().Unix(), ts, 2)
	assert.Len(t, h1, 3, "only the three svix-* headers")
}

// TestSignerNow makes deliveries outside the tolerance with Signer.Now and
// checks that svix and tlwebhook reject them for their time alone.
func TestSignerNow(t *testing.T) {
	tests := []struct {
		name    string
		offset  time.Duration
		wantErr error
	}{
		{name: "current", offset: 0},
		{name: "four minutes old", offset: -4 * time.Minute},
		{name: "stale", offset: -10 * time.Minute, wantErr: tlwebhook.ErrTimestampTooOld},
		{name: "from the future", offset: 10 * time.Minute, wantErr: tlwebhook.ErrTimestampTooNew},
	}
	secret := tlwebhooktest.NewSecret()
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	v, err := tlwebhook.NewVerifier(secret)
	require.NoError(t, err)
	body := tlwebhooktest.Sample(tlwebhook.EventTypeSandboxFailed)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tlwebhooktest.NewSigner(secret)
			require.NoError(t, err)
			s.Now = func() time.Time { return time.Now().Add(tt.offset) }
			h := s.Header(body)

			require.NoError(t, wh.VerifyIgnoringTimestamp(body, h), "signature itself is valid")
			_, err = v.Verify(body, h)
			if tt.wantErr == nil {
				assert.NoError(t, wh.Verify(body, h))
				assert.NoError(t, err)
				return
			}
			assert.Error(t, wh.Verify(body, h), "svix accepts the time")
			assert.ErrorIs(t, err, tt.wantErr)
		})
	}
}

func TestNewRequest(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	body := tlwebhooktest.Sample(tlwebhook.EventTypeRequestFailed)

	tests := []struct {
		name, target, wantPath, wantHost string
	}{
		{name: "path", target: "/webhooks/tensorlake", wantPath: "/webhooks/tensorlake", wantHost: "example.com"},
		{name: "absolute URL", target: "https://hooks.example.org/tl?x=1", wantPath: "/tl", wantHost: "hooks.example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tlwebhooktest.NewRequest(secret, tt.target, body)
			assert.Equal(t, http.MethodPost, req.Method)
			assert.Equal(t, tt.wantPath, req.URL.Path)
			assert.Equal(t, tt.wantHost, req.Host)
			assert.Equal(t, "application/json", req.Header.Get("Content-Type"))
			assert.Equal(t, int64(len(body)), req.ContentLength)
			got, err := io.ReadAll(req.Body)
			require.NoError(t, err)
			assert.Equal(t, body, got)
			assert.NoError(t, wh.Verify(got, req.Header), "svix rejects the request")
		})
	}
}

func TestNewRequestPanicsOnInvalidSecret(t *testing.T) {
	assert.PanicsWithValue(t,
		"tlwebhooktest.NewRequest: tlwebhooktest: secret is not base64 (expected whsec_ followed by base64)",
		func() { tlwebhooktest.NewRequest("whsec_%%%", "/", nil) })
}

// recorder registers every callback of h and records which ran.
type recorder struct {
	callback string
	typ      tlwebhook.EventType
	delivery tlwebhook.Delivery
	calls    int
}

func newRecordingHandler(t *testing.T, secret string) (*tlwebhook.Handler, *recorder) {
	t.Helper()
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	r := &recorder{}
	everycallback.Register(h, func(ctx context.Context, name string, ev tlwebhook.Event) error {
		r.calls++
		r.callback = name
		r.typ = ev.Type()
		r.delivery, _ = tlwebhook.DeliveryFromContext(ctx)
		return nil
	})
	return h, r
}

// wantCallback is the callback each event type must reach.
func wantCallback(t tlwebhook.EventType) string { return testutil.WantCallback(string(t)) }

// TestSamplesDispatch sends every sample, signed, through a Handler and
// checks that it reaches the callback of its type, once.
func TestSamplesDispatch(t *testing.T) {
	types := tlwebhook.EventTypes()
	for _, typ := range types {
		t.Run(string(typ), func(t *testing.T) {
			require.True(t, tlwebhooktest.HasSample(typ), "no sample for %s", typ)
			secret := tlwebhooktest.NewSecret()
			h, r := newRecordingHandler(t, secret)

			req := tlwebhooktest.NewRequest(secret, "/webhooks/tensorlake", tlwebhooktest.Sample(typ))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			assert.Equal(t, http.StatusNoContent, rec.Code)
			assert.Equal(t, 1, r.calls)
			assert.Equal(t, wantCallback(typ), r.callback)
			assert.Equal(t, typ, r.typ)
			assert.Equal(t, req.Header.Get("svix-id"), r.delivery.ID)
		})
	}
}

// TestSignedWithOtherSecretIsRejected shows that the handler checks what
// the signer signs: a request signed under another secret runs nothing.
func TestSignedWithOtherSecretIsRejected(t *testing.T) {
	h, r := newRecordingHandler(t, tlwebhooktest.NewSecret())
	req := tlwebhooktest.NewRequest(tlwebhooktest.NewSecret(), "/", tlwebhooktest.Sample(tlwebhook.EventTypeJobCreated))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Zero(t, r.calls)
}

func TestSamples(t *testing.T) {
	all := tlwebhooktest.Samples()
	assert.Len(t, all, len(tlwebhook.EventTypes()))
	for typ, body := range all {
		assert.Equal(t, tlwebhooktest.Sample(typ), body, typ)
		ev, err := tlwebhook.ParseEvent(body)
		require.NoError(t, err, typ)
		assert.Equal(t, typ, ev.Type())
	}
}

func TestSampleReturnsCopy(t *testing.T) {
	a := tlwebhooktest.Sample(tlwebhook.EventTypeJobCreated)
	orig := string(a)
	a[0] = 'X'
	assert.Equal(t, orig, string(tlwebhooktest.Sample(tlwebhook.EventTypeJobCreated)))
	all := tlwebhooktest.Samples()
	all[tlwebhook.EventTypeJobCreated][0] = 'Y'
	assert.Equal(t, orig, string(tlwebhooktest.Samples()[tlwebhook.EventTypeJobCreated]))
}

func TestSampleUnknownType(t *testing.T) {
	const typ tlwebhook.EventType = "tensorlake.sandbox.exploded"
	assert.False(t, tlwebhooktest.HasSample(typ))
	assert.PanicsWithValue(t,
		`tlwebhooktest.Sample: no sample payload for event type "tensorlake.sandbox.exploded"; known types: `+strings.Join(func() (s []string) {
			for _, t := range tlwebhook.EventTypes() {
				s = append(s, string(t))
			}
			return s
		}(), ", "),
		func() { tlwebhooktest.Sample(typ) })
}
