package tlwebhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
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

// The known-answer vector published by Svix.
const (
	katSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	katID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	katTimestamp = 1614265330
	katBody      = `{"test": 2432232314}`
	katSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// svixSign signs a delivery with Svix's own library, the oracle of these
// tests, and returns the signature header value ("v1,<base64>").
func svixSign(t testing.TB, secret, id string, ts time.Time, body []byte) string {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	sig, err := wh.Sign(id, ts, body)
	require.NoError(t, err)
	return sig
}

// svixVerify verifies with Svix's own library, which uses time.Now and a
// fixed five-minute tolerance.
func svixVerify(t testing.TB, secret string, body []byte, h http.Header) error {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	return wh.Verify(body, h)
}

// svixHeaders returns the three svix-* headers of a delivery.
func svixHeaders(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderSvixID, id)
	h.Set(HeaderSvixTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSvixSignature, sig)
	return h
}

// webhookHeaders returns the three webhook-* headers of a delivery.
func webhookHeaders(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderWebhookID, id)
	h.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderWebhookSignature, sig)
	return h
}

// fixedClock pins a verifier's clock.
func fixedClock(now time.Time) VerifierOption {
	return WithClock(func() time.Time { return now })
}

// quiet discards the verifier's log records.
func quiet() VerifierOption { return WithLogger(slog.New(slog.DiscardHandler)) }

// secretFor returns the whsec_ form of key.
func secretFor(key []byte) string {
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n+7)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n:n]
}

func randomSecret(r *rand.Rand) string {
	return secretFor(randomBytes(r, 16+r.IntN(49)))
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"

func randomID(r *rand.Rand) string {
	b := make([]byte, 1+r.IntN(40))
	for i := range b {
		b[i] = idAlphabet[r.IntN(len(idAlphabet))]
	}
	return "msg_" + string(b)
}

// svixErrorKinds maps the messages of Svix's unexported errors to our
// sentinels, so that error kinds can be compared.
var svixErrorKinds = map[string]error{
	"missing required headers":    ErrMissingHeaders,
	"invalid signature headers":   ErrInvalidHeaders,
	"no matching signature found": ErrNoMatchingSignature,
	"message timestamp too old":   ErrTimestampTooOld,
	"message timestamp too new":   ErrTimestampTooNew,
}

// assertAgrees checks that our verdict and Svix's agree, including the kind
// of the error.
func assertAgrees(t testing.TB, ours, theirs error, msgAndArgs ...any) bool {
	t.Helper()
	if theirs == nil {
		return assert.NoError(t, ours, msgAndArgs...)
	}
	kind, ok := svixErrorKinds[theirs.Error()]
	if !assert.Truef(t, ok, "unexpected svix error %q", theirs) {
		return false
	}
	return assert.ErrorIs(t, ours, kind, msgAndArgs...)
}

// assertNoLeak checks that s contains none of the secrets (with or without
// prefix) nor any of the given signatures (with or without "v1,").
func assertNoLeak(t testing.TB, s string, secrets, signatures []string, msgAndArgs ...any) {
	t.Helper()
	for _, secret := range secrets {
		if strings.TrimPrefix(secret, "whsec_") == "" {
			continue
		}
		assert.NotContains(t, s, secret, msgAndArgs...)
		assert.NotContains(t, s, strings.TrimPrefix(secret, "whsec_"), msgAndArgs...)
	}
	for _, sig := range signatures {
		if b64 := strings.TrimPrefix(sig, "v1,"); b64 != "" {
			assert.NotContains(t, s, b64, msgAndArgs...)
		}
	}
}

func TestVerifyKnownAnswer(t *testing.T) {
	body := []byte(katBody)
	sig := svixSign(t, katSecret, katID, time.Unix(katTimestamp, 0), body)
	require.Equal(t, katSignature, sig, "svix's Sign must reproduce the published vector")

	v, err := NewVerifier(katSecret, fixedClock(time.Unix(katTimestamp, 0)))
	require.NoError(t, err)
	d, err := v.Verify(body, svixHeaders(katID, katTimestamp, katSignature))
	require.NoError(t, err)
	assert.Equal(t, katID, d.ID)
	assert.True(t, d.Timestamp.Equal(time.Unix(katTimestamp, 0)), "timestamp %v", d.Timestamp)
	assert.Empty(t, d.EventID)
	assert.Equal(t, katID, d.IdempotencyKey())

	// A different body under the same headers must not verify.
	_, err = v.Verify([]byte(`{"test": 2432232315}`), svixHeaders(katID, katTimestamp, katSignature))
	assert.ErrorIs(t, err, ErrNoMatchingSignature)
}

// mutation turns a valid delivery into a variant whose verdict we know.
type mutation struct {
	name string
	// apply returns the body and headers to verify. in is a valid delivery
	// with svix-* headers; apply may modify copies only.
	apply func(t testing.TB, r *rand.Rand, in diffCase) ([]byte, http.Header)
	// accept is whether the variant must verify; kind is the sentinel a
	// rejection must wrap, or nil when several kinds are possible.
	accept bool
	kind   error
}

// diffCase is one random, validly signed delivery.
type diffCase struct {
	secret string
	id     string
	ts     int64
	body   []byte
	sig    string // "v1,<base64>" from svix's Sign
}

func (c diffCase) header() http.Header { return svixHeaders(c.id, c.ts, c.sig) }

func flipByte(r *rand.Rand, s []byte) []byte {
	out := bytes.Clone(s)
	out[r.IntN(len(out))] ^= 1 << r.IntN(8)
	return out
}

func bogusSig(r *rand.Rand) string {
	return "v1," + base64.StdEncoding.EncodeToString(randomBytes(r, 32))
}

func resign(t testing.TB, c diffCase, ts int64) http.Header {
	return svixHeaders(c.id, ts, svixSign(t, c.secret, c.id, time.Unix(ts, 0), c.body))
}

func diffMutations() []mutation {
	return []mutation{
		{name: "unmodified", accept: true, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, c.header()
		}},
		{name: "body byte flipped", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			if len(c.body) == 0 {
				return []byte{byte(r.Uint32())}, c.header()
			}
			return flipByte(r, c.body), c.header()
		}},
		{name: "body byte appended", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			return append(bytes.Clone(c.body), byte(r.Uint32())), c.header()
		}},
		{name: "body truncated", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			if len(c.body) == 0 {
				return []byte(" "), c.header()
			}
			return c.body[:r.IntN(len(c.body))], c.header()
		}},
		{name: "id byte flipped", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(string(flipByte(r, []byte(c.id))), c.ts, c.sig)
		}},
		{name: "timestamp digit flipped", apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			// Flipping the low bit of an ASCII digit gives another digit, so
			// the timestamp moves by a power of ten seconds: clearly inside
			// (1..100 s: wrong signature) or outside (1000 s and more) the
			// tolerance.
			h := c.header()
			h.Set(HeaderSvixTimestamp, string(flipDigit(r, h.Get(HeaderSvixTimestamp))))
			return c.body, h
		}},
		{name: "timestamp plus one second", kind: ErrNoMatchingSignature, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts+1, c.sig)
		}},
		{name: "timestamp with plus sign", accept: true, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			h := c.header()
			h.Set(HeaderSvixTimestamp, "+"+h.Get(HeaderSvixTimestamp))
			return c.body, h
		}},
		{name: "timestamp not a number", kind: ErrInvalidHeaders, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			h := c.header()
			h.Set(HeaderSvixTimestamp, h.Get(HeaderSvixTimestamp)+"s")
			return c.body, h
		}},
		{name: "timestamp in milliseconds", kind: ErrTimestampTooNew, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, resign(t, c, c.ts*1000)
		}},
		{name: "signed 10 minutes ago", kind: ErrTimestampTooOld, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, resign(t, c, c.ts-600)
		}},
		{name: "signed 10 minutes ahead", kind: ErrTimestampTooNew, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, resign(t, c, c.ts+600)
		}},
		{name: "signed 4 minutes ago", accept: true, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, resign(t, c, c.ts-240)
		}},
		{name: "signed 4 minutes ahead", accept: true, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, resign(t, c, c.ts+240)
		}},
		{name: "signature byte flipped", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, string(flipByte(r, []byte(c.sig))))
		}},
		{name: "signature base64 char changed", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			b := []byte(c.sig)
			i := 3 + r.IntN(42) // inside the base64 part, before the padding
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return c.body, svixHeaders(c.id, c.ts, string(b))
		}},
		{name: "signature unpadded", kind: ErrNoMatchingSignature, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, strings.TrimRight(c.sig, "="))
		}},
		{name: "signed with another secret", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, svixSign(t, randomSecret(r), c.id, time.Unix(c.ts, 0), c.body))
		}},
		{name: "svix-id dropped", kind: ErrMissingHeaders, apply: dropHeader(HeaderSvixID)},
		{name: "svix-timestamp dropped", kind: ErrMissingHeaders, apply: dropHeader(HeaderSvixTimestamp)},
		{name: "svix-signature dropped", kind: ErrMissingHeaders, apply: dropHeader(HeaderSvixSignature)},
		{name: "svix-signature empty", kind: ErrMissingHeaders, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			h := c.header()
			h.Set(HeaderSvixSignature, "")
			return c.body, h
		}},
		{name: "all headers dropped", kind: ErrMissingHeaders, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, http.Header{}
		}},
		{name: "bogus entry before", accept: true, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, bogusSig(r)+" "+c.sig)
		}},
		{name: "bogus entry after", accept: true, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, c.sig+" "+bogusSig(r))
		}},
		{name: "only bogus entries", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, bogusSig(r)+" "+bogusSig(r))
		}},
		{name: "v2 entry added", accept: true, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, "v2,"+strings.TrimPrefix(bogusSig(r), "v1,")+" "+c.sig)
		}},
		{name: "valid signature labelled v2", kind: ErrNoMatchingSignature, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, "v2,"+strings.TrimPrefix(c.sig, "v1,"))
		}},
		{name: "valid signature labelled V1", kind: ErrNoMatchingSignature, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, "V1,"+strings.TrimPrefix(c.sig, "v1,"))
		}},
		{name: "extra comma field", accept: true, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, c.sig+",extra")
		}},
		{name: "duplicate spaces", accept: true, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, "  "+bogusSig(r)+"  "+c.sig+"  ")
		}},
		{name: "tab separator", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, bogusSig(r)+"\t"+c.sig)
		}},
		{name: "comma separator", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, svixHeaders(c.id, c.ts, bogusSig(r)+","+c.sig)
		}},
		{name: "valid signature in second header value", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			h := c.header()
			h[canonSvixSignature] = []string{bogusSig(r), c.sig}
			return c.body, h
		}},
		{name: "webhook-* names", accept: true, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			return c.body, webhookHeaders(c.id, c.ts, c.sig)
		}},
		{name: "svix set incomplete, webhook set complete", accept: true, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			h := webhookHeaders(c.id, c.ts, c.sig)
			h.Set(HeaderSvixID, c.id)
			h.Set(HeaderSvixTimestamp, strconv.FormatInt(c.ts, 10))
			return c.body, h
		}},
		{name: "svix set preferred over webhook set", kind: ErrNoMatchingSignature, apply: func(t testing.TB, r *rand.Rand, c diffCase) ([]byte, http.Header) {
			h := svixHeaders(c.id, c.ts, bogusSig(r))
			for k, v := range webhookHeaders(c.id, c.ts, c.sig) {
				h[k] = v
			}
			return c.body, h
		}},
		{name: "each set missing one header", kind: ErrMissingHeaders, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			h := webhookHeaders(c.id, c.ts, c.sig)
			h.Del(HeaderWebhookTimestamp)
			h.Set(HeaderSvixTimestamp, strconv.FormatInt(c.ts, 10))
			h.Set(HeaderSvixSignature, c.sig)
			return c.body, h
		}},
		{name: "non-canonical header keys", kind: ErrMissingHeaders, apply: func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
			h := http.Header{}
			for k, v := range c.header() {
				h[strings.ToLower(k)] = v
			}
			return c.body, h
		}},
	}
}

func dropHeader(name string) func(testing.TB, *rand.Rand, diffCase) ([]byte, http.Header) {
	return func(t testing.TB, _ *rand.Rand, c diffCase) ([]byte, http.Header) {
		h := c.header()
		h.Del(name)
		return c.body, h
	}
}

// headerTimestamp reads the timestamp header the way Svix does: from the
// svix-* set if present, else from the webhook-* set.
func headerTimestamp(t testing.TB, h http.Header) int64 {
	t.Helper()
	s := h.Get(HeaderSvixTimestamp)
	if s == "" {
		s = h.Get(HeaderWebhookTimestamp)
	}
	ts, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err)
	return ts
}

func flipDigit(r *rand.Rand, s string) []byte {
	b := []byte(s)
	b[r.IntN(len(b))] ^= 1
	return b
}

// TestVerifyDifferential checks that our Verify and Svix's agree on
// accept/reject, and on the kind of error, for random deliveries and many
// variants of each.
func TestVerifyDifferential(t *testing.T) {
	const cases = 300
	mutations := diffMutations()
	for mi, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(20261126, uint64(mi)))
			for i := range cases {
				now := time.Now()
				c := diffCase{
					secret: randomSecret(r),
					id:     randomID(r),
					ts:     now.Unix(),
					body:   randomBytes(r, r.IntN(4097)),
				}
				c.sig = svixSign(t, c.secret, c.id, now, c.body)
				body, h := m.apply(t, r, c)

				v, err := NewVerifier(c.secret)
				require.NoError(t, err)
				d, ours := v.Verify(body, h)
				theirs := svixVerify(t, c.secret, body, h)

				if m.accept {
					require.NoError(t, theirs, "case %d: svix must accept this variant", i)
				} else {
					require.Error(t, theirs, "case %d: svix must reject this variant", i)
				}
				if !assertAgrees(t, ours, theirs, "case %d", i) {
					return
				}
				if ours == nil {
					assert.Equal(t, c.id, d.ID, "case %d", i)
					assert.Equal(t, headerTimestamp(t, h), d.Timestamp.Unix(), "case %d", i)
					continue
				}
				if m.kind != nil {
					require.ErrorIs(t, ours, m.kind, "case %d", i)
				}
				// The expected signature for the presented headers, as our
				// verifier computed it.
				sigs := []string{c.sig}
				if sh, err := parseHeaders(h); err == nil {
					sigs = append(sigs, svixSign(t, c.secret, sh.id, time.Unix(sh.timestamp, 0), body))
				}
				assertNoLeak(t, ours.Error(), []string{c.secret}, sigs, "case %d", i)
			}
		})
	}
}

func TestVerifyErrorKinds(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"job_id":"parse_1","status":"pending"}`)
	sig := svixSign(t, katSecret, katID, now, body)
	v, err := NewVerifier(katSecret, fixedClock(now), WithMaxBodyBytes(64))
	require.NoError(t, err)

	tests := []struct {
		name   string
		body   []byte
		header http.Header
		want   error
	}{
		{"no headers", body, http.Header{}, ErrMissingHeaders},
		{"empty id", body, svixHeaders("", now.Unix(), sig), ErrMissingHeaders},
		{"timestamp not decimal", body, func() http.Header {
			h := svixHeaders(katID, 0, sig)
			h.Set(HeaderSvixTimestamp, "2026-11-26T00:00:00Z")
			return h
		}(), ErrInvalidHeaders},
		{"timestamp overflows int64", body, func() http.Header {
			h := svixHeaders(katID, 0, sig)
			h.Set(HeaderSvixTimestamp, "99999999999999999999")
			return h
		}(), ErrInvalidHeaders},
		{"too old", body, svixHeaders(katID, now.Unix()-3600, svixSign(t, katSecret, katID, now.Add(-time.Hour), body)), ErrTimestampTooOld},
		{"too new", body, svixHeaders(katID, now.Unix()+3600, svixSign(t, katSecret, katID, now.Add(time.Hour), body)), ErrTimestampTooNew},
		{"wrong signature", body, svixHeaders(katID, now.Unix(), katSignature), ErrNoMatchingSignature},
		{"no v1 entry", body, svixHeaders(katID, now.Unix(), "v1a,"+strings.TrimPrefix(sig, "v1,")), ErrNoMatchingSignature},
		{"payload too large", bytes.Repeat([]byte("x"), 65), svixHeaders(katID, now.Unix(), sig), ErrPayloadTooLarge},
	}
	sentinels := []error{ErrMissingHeaders, ErrInvalidHeaders, ErrNoMatchingSignature, ErrTimestampTooOld,
		ErrTimestampTooNew, ErrInvalidSecret, ErrPayloadTooLarge, ErrInvalidPayload}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := v.Verify(tt.body, tt.header)
			require.ErrorIs(t, err, tt.want)
			assert.Zero(t, d)
			for _, s := range sentinels {
				if s != tt.want {
					assert.NotErrorIs(t, err, s, "an error wraps exactly one sentinel")
				}
			}
			assertNoLeak(t, err.Error(), []string{katSecret}, []string{sig}, "error %q", err)
		})
	}
}

func TestVerifyTolerance(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"a":1}`)
	tests := []struct {
		name   string
		clock  time.Time
		offset time.Duration // signing time relative to now
		opts   []VerifierOption
		want   error // nil: accepted
	}{
		{"now", now, 0, nil, nil},
		{"exactly 5 min old", now, -5 * time.Minute, nil, nil},
		{"5 min 1 s old", now, -5*time.Minute - time.Second, nil, ErrTimestampTooOld},
		{"exactly 5 min ahead", now, 5 * time.Minute, nil, nil},
		{"5 min 1 s ahead", now, 5*time.Minute + time.Second, nil, ErrTimestampTooNew},
		// A clock between seconds: the past edge compares exact durations,
		// the future edge whole seconds, like Svix's verifyTimestamp.
		{"5 min old, clock half a second later", now.Add(500 * time.Millisecond), -5 * time.Minute, nil, ErrTimestampTooOld},
		{"5 min ahead, clock half a second later", now.Add(500 * time.Millisecond), 5 * time.Minute, nil, nil},
		{"custom 30 s: 30 s old", now, -30 * time.Second, []VerifierOption{WithTolerance(30 * time.Second)}, nil},
		{"custom 30 s: 31 s old", now, -31 * time.Second, []VerifierOption{WithTolerance(30 * time.Second)}, ErrTimestampTooOld},
		{"custom 30 s: 30 s ahead", now, 30 * time.Second, []VerifierOption{WithTolerance(30 * time.Second)}, nil},
		{"custom 30 s: 31 s ahead", now, 31 * time.Second, []VerifierOption{WithTolerance(30 * time.Second)}, ErrTimestampTooNew},
		{"custom 1 h: 59 min old", now, -59 * time.Minute, []VerifierOption{WithTolerance(time.Hour)}, nil},
		{"custom 1 h: 59 min ahead", now, 59 * time.Minute, []VerifierOption{WithTolerance(time.Hour)}, nil},
		{"custom 1 h: 61 min old", now, -61 * time.Minute, []VerifierOption{WithTolerance(time.Hour)}, ErrTimestampTooOld},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := now.Add(tt.offset)
			sig := svixSign(t, katSecret, katID, ts, body)
			v, err := NewVerifier(katSecret, append([]VerifierOption{fixedClock(tt.clock)}, tt.opts...)...)
			require.NoError(t, err)
			d, err := v.Verify(body, svixHeaders(katID, ts.Unix(), sig))
			if tt.want == nil {
				require.NoError(t, err)
				assert.True(t, d.Timestamp.Equal(ts), "Delivery.Timestamp = %v, want %v", d.Timestamp, ts)
				return
			}
			require.ErrorIs(t, err, tt.want)
			other := ErrTimestampTooNew
			if tt.want == ErrTimestampTooNew {
				other = ErrTimestampTooOld
			}
			assert.NotErrorIs(t, err, other)
		})
	}

	t.Run("invalid tolerance", func(t *testing.T) {
		for _, d := range []time.Duration{0, -time.Second} {
			_, err := NewVerifier(katSecret, WithTolerance(d))
			assert.Error(t, err, "WithTolerance(%v)", d)
		}
	})
	t.Run("clock is read on every call", func(t *testing.T) {
		var mu sync.Mutex
		clock := now
		v, err := NewVerifier(katSecret, WithClock(func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return clock
		}))
		require.NoError(t, err)
		h := svixHeaders(katID, now.Unix(), svixSign(t, katSecret, katID, now, body))
		_, err = v.Verify(body, h)
		require.NoError(t, err)
		mu.Lock()
		clock = now.Add(DefaultTolerance + time.Second)
		mu.Unlock()
		_, err = v.Verify(body, h)
		require.ErrorIs(t, err, ErrTimestampTooOld)
	})
}

func TestVerifyRotation(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	oldSecret, newSecret, otherSecret := randomSecret(r), randomSecret(r), randomSecret(r)
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"job_id":"parse_rot","status":"pending","created_at":"2026-01-01T00:00:00Z"}`)
	oldSig := svixSign(t, oldSecret, katID, now, body)
	newSig := svixSign(t, newSecret, katID, now, body)
	otherSig := svixSign(t, otherSecret, katID, now, body)

	tests := []struct {
		name   string
		header string
		accept bool
	}{
		{"old secret", oldSig, true},
		{"new secret", newSig, true},
		{"both, new first", newSig + " " + oldSig, true},
		{"both, old first", oldSig + " " + newSig, true},
		{"neither", otherSig, false},
		{"neither, two entries", otherSig + " " + bogusSig(r), false},
	}
	verifiers := map[string]func() (*Verifier, error){
		"NewVerifier": func() (*Verifier, error) {
			return NewVerifier(newSecret, fixedClock(now), WithSecrets(oldSecret))
		},
		"NewHandler": func() (*Verifier, error) {
			h, err := NewHandler(oldSecret, fixedClock(now), WithSecrets(newSecret), quiet())
			if err != nil {
				return nil, err
			}
			return h.v, nil
		},
	}
	for vname, mk := range verifiers {
		v, err := mk()
		require.NoError(t, err)
		for _, tt := range tests {
			t.Run(vname+"/"+tt.name, func(t *testing.T) {
				d, err := v.Verify(body, svixHeaders(katID, now.Unix(), tt.header))
				if tt.accept {
					require.NoError(t, err)
					assert.Equal(t, katID, d.ID)
					return
				}
				require.ErrorIs(t, err, ErrNoMatchingSignature)
				assertNoLeak(t, err.Error(), []string{oldSecret, newSecret}, []string{oldSig, newSig}, "error %q", err)
			})
		}
	}
}

func TestSecrets(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"x":"y"}`)
	key := []byte("0123456789abcdef0123456789") // 26 bytes
	withPrefix := secretFor(key)
	sig := svixSign(t, withPrefix, katID, now, body)

	t.Run("accepted forms", func(t *testing.T) {
		for _, s := range []string{
			withPrefix,
			strings.TrimPrefix(withPrefix, "whsec_"),
		} {
			v, err := NewVerifier(s, fixedClock(now))
			require.NoError(t, err, "secret form %q", s)
			_, err = v.Verify(body, svixHeaders(katID, now.Unix(), sig))
			assert.NoError(t, err, "secret form %q", s)
			_, err = NewHandler(s, quiet())
			assert.NoError(t, err, "secret form %q", s)
		}
	})

	t.Run("16-byte key is the shortest accepted", func(t *testing.T) {
		s := secretFor(key[:16])
		v, err := NewVerifier(s, fixedClock(now))
		require.NoError(t, err)
		_, err = v.Verify(body, svixHeaders(katID, now.Unix(), svixSign(t, s, katID, now, body)))
		assert.NoError(t, err)
	})

	invalid := []struct{ name, secret string }{
		{"empty", ""},
		{"prefix only", "whsec_"},
		{"not base64", "whsec_this is not base64!"},
		{"not base64 without prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS*"},
		{"url-safe alphabet", "whsec_" + base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe})},
		{"truncated base64", withPrefix[:len(withPrefix)-1]},
		{"15-byte key", secretFor(key[:15])},
		{"15-byte key without prefix", base64.StdEncoding.EncodeToString(key[:15])},
		{"public key prefix", "whpk_" + base64.StdEncoding.EncodeToString(key)},
	}
	for _, tt := range invalid {
		t.Run("invalid/"+tt.name, func(t *testing.T) {
			checkErr := func(what string, err error) {
				t.Helper()
				require.ErrorIs(t, err, ErrInvalidSecret, what)
				msg := err.Error()
				if tt.secret != "" && tt.secret != "whsec_" {
					assert.NotContains(t, msg, tt.secret, what)
					assert.NotContains(t, msg, strings.TrimPrefix(tt.secret, "whsec_"), what)
				}
				assert.NotContains(t, msg, withPrefix, what)
				assert.NotContains(t, msg, strings.TrimPrefix(withPrefix, "whsec_"), what)
			}
			v, err := NewVerifier(tt.secret)
			assert.Nil(t, v)
			checkErr("NewVerifier", err)
			h, err := NewHandler(tt.secret)
			assert.Nil(t, h)
			checkErr("NewHandler", err)
			_, err = NewVerifier(withPrefix, WithSecrets(tt.secret))
			checkErr("NewVerifier WithSecrets", err)
			_, err = NewHandler(withPrefix, WithSecrets(withPrefix, tt.secret))
			checkErr("NewHandler WithSecrets", err)
		})
	}
}

func TestVerifyHeaderForms(t *testing.T) {
	body := []byte(`{"event_type":"tensorlake.sandbox.created"}`)
	r := rand.New(rand.NewPCG(3, 4))
	secret := randomSecret(r)
	now := time.Now()
	ts := now.Unix()
	sig := svixSign(t, secret, katID, now, body)
	b64 := strings.TrimPrefix(sig, "v1,")

	raw := func(pairs ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(pairs); i += 2 {
			h[pairs[i]] = append(h[pairs[i]], pairs[i+1])
		}
		return h
	}
	tsStr := strconv.FormatInt(ts, 10)
	tests := []struct {
		name   string
		header http.Header
		accept bool
		kind   error
	}{
		{"svix-*", svixHeaders(katID, ts, sig), true, nil},
		{"webhook-*", webhookHeaders(katID, ts, sig), true, nil},
		{"canonical keys in a raw map", raw("Svix-Id", katID, "Svix-Timestamp", tsStr, "Svix-Signature", sig), true, nil},
		// http.Header.Get canonicalises the name it looks up, so keys that
		// were stored non-canonically are invisible to it; Svix misses them.
		{"lower-case keys in a raw map", raw("svix-id", katID, "svix-timestamp", tsStr, "svix-signature", sig), false, ErrMissingHeaders},
		{"upper-case keys in a raw map", raw("SVIX-ID", katID, "SVIX-TIMESTAMP", tsStr, "SVIX-SIGNATURE", sig), false, ErrMissingHeaders},
		{"lower-case webhook keys in a raw map", raw("webhook-id", katID, "webhook-timestamp", tsStr, "webhook-signature", sig), false, ErrMissingHeaders},
		{"one lower-case key in a raw map", raw("Svix-Id", katID, "svix-timestamp", tsStr, "Svix-Signature", sig), false, ErrMissingHeaders},
		{"only the last of several v1 entries matches", svixHeaders(katID, ts, bogusSig(r)+" "+bogusSig(r)+" "+bogusSig(r)+" "+sig), true, nil},
		{"only the first of several v1 entries matches", svixHeaders(katID, ts, sig+" "+bogusSig(r)+" "+bogusSig(r)), true, nil},
		{"entry v1 without comma", svixHeaders(katID, ts, "v1"), false, ErrNoMatchingSignature},
		{"entry v1 without comma, then valid", svixHeaders(katID, ts, "v1 "+sig), true, nil},
		{"entry v1 with empty signature", svixHeaders(katID, ts, "v1,"), false, ErrNoMatchingSignature},
		{"entry v1 with empty signature, then valid", svixHeaders(katID, ts, "v1, "+sig), true, nil},
		{"bare base64 without version", svixHeaders(katID, ts, b64), false, ErrNoMatchingSignature},
		{"only a v2 entry with the valid signature", svixHeaders(katID, ts, "v2,"+b64), false, ErrNoMatchingSignature},
		{"only a v1a entry with the valid signature", svixHeaders(katID, ts, "v1a,"+b64), false, ErrNoMatchingSignature},
		{"a v1a entry with the valid signature after a v1 entry", svixHeaders(katID, ts, bogusSig(r)+" v1a,"+b64), false, ErrNoMatchingSignature},
		{"a v2 entry with the valid signature after a v1 entry", svixHeaders(katID, ts, bogusSig(r)+" v2,"+b64), false, ErrNoMatchingSignature},
		{"a v1 entry with the signature split by a comma", svixHeaders(katID, ts, "v1,"+b64[:20]+","+b64[20:]), false, ErrNoMatchingSignature},
		{"v1 signature with surrounding spaces", svixHeaders(katID, ts, " "+sig+" "), true, nil},
		{"v1 signature with trailing newline", svixHeaders(katID, ts, sig+"\n"), false, ErrNoMatchingSignature},
		{"version with a space before the comma", svixHeaders(katID, ts, "v1 ,"+b64), false, ErrNoMatchingSignature},
		{"id with surrounding space", svixHeaders(" "+katID, ts, sig), false, ErrNoMatchingSignature},
		{"timestamp with leading zero", raw("Svix-Id", katID, "Svix-Timestamp", "0"+tsStr, "Svix-Signature", sig), true, nil},
		{"timestamp with surrounding space", raw("Svix-Id", katID, "Svix-Timestamp", " "+tsStr, "Svix-Signature", sig), false, ErrInvalidHeaders},
		{"timestamp with fraction", raw("Svix-Id", katID, "Svix-Timestamp", tsStr+".0", "Svix-Signature", sig), false, ErrInvalidHeaders},
		{"empty first value hides the second", raw("Svix-Id", "", "Svix-Id", katID, "Svix-Timestamp", tsStr, "Svix-Signature", sig), false, ErrMissingHeaders},
	}
	v, err := NewVerifier(secret, fixedClock(now))
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ours := v.Verify(body, tt.header)
			theirs := svixVerify(t, secret, body, tt.header)
			if tt.accept {
				require.NoError(t, theirs, "svix")
				require.NoError(t, ours)
				return
			}
			require.Error(t, theirs, "svix")
			assertAgrees(t, ours, theirs)
			require.ErrorIs(t, ours, tt.kind)
			assertNoLeak(t, ours.Error(), []string{secret}, []string{sig}, "error %q", ours)
		})
	}
}

// TestVerifySignatureEntryLimit documents the one deliberate difference from
// Svix: only the first maxSignatureEntries entries of a signature header are
// examined.
func TestVerifySignatureEntryLimit(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	secret := randomSecret(r)
	now := time.Now()
	body := []byte(`{}`)
	sig := svixSign(t, secret, katID, now, body)
	v, err := NewVerifier(secret, fixedClock(now))
	require.NoError(t, err)
	entries := func(n int) string {
		e := make([]string, n)
		for i := range e {
			e[i] = bogusSig(r)
		}
		return strings.Join(e, " ")
	}

	h := svixHeaders(katID, now.Unix(), entries(maxSignatureEntries-1)+" "+sig)
	_, err = v.Verify(body, h)
	require.NoError(t, err, "a match in entry %d is found", maxSignatureEntries)
	require.NoError(t, svixVerify(t, secret, body, h))

	h = svixHeaders(katID, now.Unix(), entries(maxSignatureEntries)+" "+sig)
	_, err = v.Verify(body, h)
	require.ErrorIs(t, err, ErrNoMatchingSignature, "a match after entry %d is not examined", maxSignatureEntries)
	require.NoError(t, svixVerify(t, secret, body, h), "svix examines every entry")
}

func TestVerifyMaxBodyBytes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v, err := NewVerifier(katSecret, fixedClock(now), WithMaxBodyBytes(100))
	require.NoError(t, err)
	for _, n := range []int{0, 1, 99, 100, 101, 4096} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			body := bytes.Repeat([]byte{'a'}, n)
			_, err := v.Verify(body, svixHeaders(katID, now.Unix(), svixSign(t, katSecret, katID, now, body)))
			if n <= 100 {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrPayloadTooLarge)
		})
	}
	t.Run("default limit", func(t *testing.T) {
		v, err := NewVerifier(katSecret, fixedClock(now))
		require.NoError(t, err)
		body := make([]byte, DefaultMaxBodyBytes+1)
		_, err = v.Verify(body, svixHeaders(katID, now.Unix(), svixSign(t, katSecret, katID, now, body)))
		require.ErrorIs(t, err, ErrPayloadTooLarge)
		_, err = v.Verify(body[:DefaultMaxBodyBytes], svixHeaders(katID, now.Unix(), svixSign(t, katSecret, katID, now, body[:DefaultMaxBodyBytes])))
		require.NoError(t, err)
	})
	t.Run("invalid limit", func(t *testing.T) {
		for _, n := range []int64{0, -1} {
			_, err := NewVerifier(katSecret, WithMaxBodyBytes(n))
			assert.Error(t, err, "WithMaxBodyBytes(%d)", n)
		}
	})
}

// raceEnabled reports whether the test binary was built with -race, under
// which sync.Pool drops items at random and allocation counts mean nothing.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func TestVerifyZeroAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	r := rand.New(rand.NewPCG(7, 8))
	oldSecret := randomSecret(r)
	now := time.Unix(1_800_000_000, 0)
	body := randomBytes(r, 2048)
	sig := svixSign(t, katSecret, katID, now, body)
	oldSig := svixSign(t, oldSecret, katID, now, body)
	tests := []struct {
		name   string
		header http.Header
	}{
		{"svix-*", svixHeaders(katID, now.Unix(), sig)},
		{"webhook-*", webhookHeaders(katID, now.Unix(), sig)},
		{"last of several entries", svixHeaders(katID, now.Unix(), bogusSig(r)+" v2,xyz "+sig)},
		{"second secret", svixHeaders(katID, now.Unix(), oldSig)},
	}
	v, err := NewVerifier(katSecret, fixedClock(now), WithSecrets(oldSecret))
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var verr error
			allocs := testing.AllocsPerRun(200, func() {
				_, verr = v.Verify(body, tt.header)
			})
			require.NoError(t, verr)
			assert.Zero(t, allocs, "allocations per valid Verify")
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// seen records what the wrapped handler observed for one request.
type seen struct {
	body          []byte
	delivery      Delivery
	ok            bool
	contentLength int64
}

func TestMiddleware(t *testing.T) {
	const limit = 1024
	r := rand.New(rand.NewPCG(9, 10))
	secret := randomSecret(r)
	var logs testutil.SyncBuffer
	v, err := NewVerifier(secret, WithMaxBodyBytes(limit), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)

	calls := make(chan seen, 16)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		d, ok := DeliveryFromContext(r.Context())
		calls <- seen{body: body, delivery: d, ok: ok, contentLength: r.ContentLength}
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(body)
	})
	// arrivals records how each request arrived (to show that the chunked
	// cases really are chunked) and how much of its body the middleware
	// read.
	type arrival struct {
		contentLength int64
		read          *atomic.Int64
	}
	var mu sync.Mutex
	arrivals := map[string]arrival{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		a := arrival{contentLength: req.ContentLength, read: new(atomic.Int64)}
		mu.Lock()
		arrivals[req.Header.Get("X-Test-Case")] = a
		mu.Unlock()
		req.Body = countingReader{req.Body, a.read}
		v.Middleware(next).ServeHTTP(w, req)
	}))
	defer srv.Close()

	type request struct {
		name    string
		method  string
		body    []byte
		chunked bool
		sign    func(id string, body []byte) http.Header
		status  int
		next    bool
		// maxRead bounds the body bytes the middleware may read; -1: any.
		maxRead int64
	}
	validSign := func(id string, body []byte) http.Header {
		now := time.Now()
		return svixHeaders(id, now.Unix(), svixSign(t, secret, id, now, body))
	}
	validBody := randomBytes(r, 700) // not UTF-8
	bigBody := randomBytes(r, limit+1)
	tests := []request{
		{name: "valid", maxRead: -1, method: http.MethodPost, body: validBody, sign: validSign, status: http.StatusAccepted, next: true},
		{name: "valid, chunked", maxRead: -1, method: http.MethodPost, body: validBody, chunked: true, sign: validSign, status: http.StatusAccepted, next: true},
		{name: "valid, empty body", maxRead: -1, method: http.MethodPost, body: []byte{}, sign: validSign, status: http.StatusAccepted, next: true},
		{name: "valid, exactly the limit", maxRead: -1, method: http.MethodPost, body: randomBytes(r, limit), sign: validSign, status: http.StatusAccepted, next: true},
		{name: "valid, webhook-* headers", maxRead: -1, method: http.MethodPost, body: validBody, sign: func(id string, body []byte) http.Header {
			now := time.Now()
			return webhookHeaders(id, now.Unix(), svixSign(t, secret, id, now, body))
		}, status: http.StatusAccepted, next: true},
		{name: "GET", maxRead: 0, method: http.MethodGet, body: nil, sign: validSign, status: http.StatusMethodNotAllowed},
		{name: "PUT", maxRead: 0, method: http.MethodPut, body: validBody, sign: validSign, status: http.StatusMethodNotAllowed},
		{name: "over the limit, declared", maxRead: 0, method: http.MethodPost, body: bigBody, sign: validSign, status: http.StatusRequestEntityTooLarge},
		{name: "over the limit, chunked", maxRead: limit + 1, method: http.MethodPost, body: bigBody, chunked: true, sign: validSign, status: http.StatusRequestEntityTooLarge},
		{name: "far over the limit, chunked", maxRead: limit + 1, method: http.MethodPost, body: randomBytes(r, 64*limit), chunked: true, sign: validSign, status: http.StatusRequestEntityTooLarge},
		{name: "bad signature", maxRead: -1, method: http.MethodPost, body: validBody, sign: func(id string, _ []byte) http.Header {
			return svixHeaders(id, time.Now().Unix(), bogusSig(r))
		}, status: http.StatusUnauthorized},
		{name: "body tampered", maxRead: -1, method: http.MethodPost, body: validBody, sign: func(id string, body []byte) http.Header {
			return validSign(id, append(bytes.Clone(body), '!'))
		}, status: http.StatusUnauthorized},
		{name: "missing headers", maxRead: 0, method: http.MethodPost, body: validBody, sign: func(string, []byte) http.Header {
			return http.Header{}
		}, status: http.StatusUnauthorized},
		{name: "missing signature header", maxRead: 0, method: http.MethodPost, body: validBody, sign: func(id string, body []byte) http.Header {
			h := validSign(id, body)
			h.Del(HeaderSvixSignature)
			return h
		}, status: http.StatusUnauthorized},
		{name: "stale", maxRead: 0, method: http.MethodPost, body: validBody, sign: func(id string, body []byte) http.Header {
			then := time.Now().Add(-time.Hour)
			return svixHeaders(id, then.Unix(), svixSign(t, secret, id, then, body))
		}, status: http.StatusUnauthorized},
		{name: "from the future", maxRead: 0, method: http.MethodPost, body: validBody, sign: func(id string, body []byte) http.Header {
			then := time.Now().Add(time.Hour)
			return svixHeaders(id, then.Unix(), svixSign(t, secret, id, then, body))
		}, status: http.StatusUnauthorized},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("msg_middleware_%d", i)
			var body io.Reader
			if tt.body != nil {
				body = bytes.NewReader(tt.body)
				if tt.chunked {
					body = io.MultiReader(body) // hides the length from the client
				}
			}
			req, err := http.NewRequest(tt.method, srv.URL, body)
			require.NoError(t, err)
			h := tt.sign(id, tt.body)
			for k, vs := range h {
				req.Header[k] = vs
			}
			req.Header.Set("X-Test-Case", tt.name)
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			respBody, err := io.ReadAll(resp.Body)
			require.NoError(t, resp.Body.Close())
			require.NoError(t, err)

			assert.Equal(t, tt.status, resp.StatusCode, "response %q", respBody)
			mu.Lock()
			a := arrivals[tt.name]
			mu.Unlock()
			require.NotNil(t, a.read, "the request must reach the server")
			if tt.chunked {
				assert.Equal(t, int64(-1), a.contentLength, "the server must see an unknown length")
			}
			if tt.maxRead >= 0 {
				assert.LessOrEqual(t, a.read.Load(), tt.maxRead, "body bytes read before rejecting")
			}
			if tt.status == http.StatusMethodNotAllowed {
				assert.Equal(t, http.MethodPost, resp.Header.Get("Allow"))
			}
			if !tt.next {
				assert.Empty(t, calls, "next must not run")
				// The signature a verifier would expect for this request.
				expected := validSign(id, tt.body).Get(HeaderSvixSignature)
				assertNoLeak(t, string(respBody), []string{secret}, []string{expected, h.Get(HeaderSvixSignature)})
				assert.Less(t, len(respBody), 100, "error bodies are short and fixed: %q", respBody)
				return
			}
			require.Len(t, calls, 1, "next must run once")
			got := <-calls
			assert.True(t, bytes.Equal(tt.body, got.body), "next must see the body byte for byte")
			assert.True(t, bytes.Equal(tt.body, respBody))
			assert.Equal(t, int64(len(tt.body)), got.contentLength)
			require.True(t, got.ok, "DeliveryFromContext")
			assert.Equal(t, id, got.delivery.ID)
			assert.True(t, got.delivery.Timestamp.Equal(time.Unix(headerTimestamp(t, h), 0)), "Delivery.Timestamp %v", got.delivery.Timestamp)
		})
	}

	srv.Close() // waits for handlers, so that every log record is written
	out := logs.String()
	assert.Contains(t, out, "delivery rejected", "rejections are logged")
	assertNoLeak(t, out, []string{secret}, nil)
}

func TestDeliveryFromContextEmpty(t *testing.T) {
	d, ok := DeliveryFromContext(context.Background())
	assert.False(t, ok)
	assert.Zero(t, d)
}

// TestErrorsNeverLeak sweeps every rejection of a random delivery under
// several secrets and checks that no error message carries a secret or the
// signature the verifier computed.
func TestErrorsNeverLeak(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	now := time.Now()
	for i := range 20 {
		secrets := []string{randomSecret(r), randomSecret(r)}
		c := diffCase{secret: secrets[1], id: randomID(r), ts: now.Unix(), body: randomBytes(r, r.IntN(512))}
		c.sig = svixSign(t, c.secret, c.id, now, c.body)
		v, err := NewVerifier(secrets[0], WithSecrets(secrets[1]), quiet())
		require.NoError(t, err)
		for _, m := range diffMutations() {
			body, h := m.apply(t, r, c)
			_, err := v.Verify(body, h)
			if m.accept {
				require.NoError(t, err, "case %d, %s", i, m.name)
				continue
			}
			require.Error(t, err, "case %d, %s", i, m.name)
			sigs := []string{c.sig, svixSign(t, secrets[0], c.id, now, c.body)}
			if sh, perr := parseHeaders(h); perr == nil {
				for _, s := range secrets {
					sigs = append(sigs, svixSign(t, s, sh.id, time.Unix(sh.timestamp, 0), body))
				}
			}
			assertNoLeak(t, err.Error(), secrets, sigs, "case %d, %s: %q", i, m.name, err)
		}
	}
}

// TestTimestampDirectionAtExtremes checks that the largest timestamps are
// reported as too new, not wrapped into too old.
func TestTimestampDirectionAtExtremes(t *testing.T) {
	now := time.Unix(1_800_000_000, 500)
	v, err := NewVerifier(katSecret, fixedClock(now))
	require.NoError(t, err)
	for _, tc := range []struct {
		ts   int64
		want error
	}{
		{math.MaxInt64, ErrTimestampTooNew},
		{math.MaxInt64 - 62135596800, ErrTimestampTooNew},
		{now.Unix() + 301, ErrTimestampTooNew},
		{now.Unix() - 301, ErrTimestampTooOld},
		{math.MinInt64, ErrTimestampTooOld},
	} {
		assert.ErrorIs(t, v.checkTimestamp(tc.ts), tc.want, "ts %d", tc.ts)
	}
}
