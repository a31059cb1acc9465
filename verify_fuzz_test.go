package tlwebhook

import (
	"encoding/base64"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"
)

// Fuzz modes: the low two bits of the mode byte choose how the signature
// header is built; the other bits pick variations.
const (
	fuzzSigned       = iota // svix's signature as is
	fuzzSignedJoined        // svix's signature joined with the fuzzed header
	fuzzSignedFlip          // svix's signature with one byte changed
	fuzzRaw                 // the fuzzed header alone
)

// FuzzVerifyDifferential checks that Verify and Svix's Verify agree on
// accept/reject, and on the kind of error, for arbitrary secrets, ids,
// timestamps, bodies and signature headers.
func FuzzVerifyDifferential(f *testing.F) {
	f.Add([]byte("0123456789abcdef"), "msg_1", int64(0), []byte(`{"a":1}`), "", byte(fuzzSigned))
	f.Add([]byte("0123456789abcdef0123"), "msg_2", int64(-30), []byte("\xff\x00"), "v1,AAAA v2,BBBB", byte(fuzzSignedJoined))

	f.Fuzz(func(t *testing.T, key []byte, id string, offset int64, body []byte, sigHeader string, mode byte) {
		// Secrets: both libraries must accept the key; ours wants 16 bytes.
		for len(key) < minKeyBytes {
			key = append(key, byte(len(key)))
		}
		secret := "whsec_" + base64.StdEncoding.EncodeToString(key)

		// Keep the timestamp clearly inside or outside the tolerance: the
		// two verifiers read the clock a moment apart.
		const margin = 5
		tol := int64(DefaultTolerance / time.Second)
		if d := abs(offset); d > tol-margin && d < tol+margin {
			offset += 2 * margin
		}
		now := time.Now()
		ts := now.Unix() + offset // may wrap for extreme offsets: both sides see the same value
		tsHeader := strconv.FormatInt(ts, 10)
		switch mode >> 6 {
		case 1:
			tsHeader = "+" + tsHeader
		case 2:
			tsHeader = "0" + tsHeader
		}

		wh, err := svix.NewWebhook(secret)
		require.NoError(t, err)
		valid, err := wh.Sign(id, time.Unix(ts, 0), body)
		require.NoError(t, err)

		sig := valid
		switch mode & 3 {
		case fuzzSignedJoined:
			if mode&4 == 0 {
				sig = sigHeader + " " + valid
			} else {
				sig = valid + " " + sigHeader
			}
		case fuzzSignedFlip:
			b := []byte(valid)
			i := int(mode>>2) % len(b)
			b[i] ^= 1 << (len(sigHeader) % 8)
			sig = string(b)
		case fuzzRaw:
			sig = sigHeader
		}

		h := http.Header{}
		names := [3]string{canonSvixID, canonSvixTimestamp, canonSvixSignature}
		if mode&8 != 0 {
			names = [3]string{canonWebhookID, canonWebhookTimestamp, canonWebhookSignature}
		}
		h[names[0]] = []string{id}
		h[names[1]] = []string{tsHeader}
		h[names[2]] = []string{sig}
		if mode&16 != 0 {
			delete(h, names[int(mode>>5)%3])
		}

		v, err := NewVerifier(secret, WithClock(func() time.Time { return now }), WithMaxBodyBytes(math.MaxInt64))
		require.NoError(t, err)
		d, ours := v.Verify(body, h)
		theirs := wh.Verify(body, h)

		if ours != nil {
			require.NotContains(t, ours.Error(), strings.TrimPrefix(secret, "whsec_"))
			require.NotContains(t, ours.Error(), strings.TrimPrefix(valid, "v1,"))
		}
		if strings.Count(sig, " ") >= maxSignatureEntries {
			// Deliberate difference: only the first maxSignatureEntries
			// entries are examined, so we may reject what Svix accepts,
			// never the reverse.
			if ours == nil {
				require.NoError(t, theirs, "accepted a header Svix rejects")
			}
			return
		}
		if theirs == nil {
			require.NoError(t, ours, "svix accepts; header %q", sig)
			require.Equal(t, id, d.ID)
			require.Equal(t, ts, d.Timestamp.Unix())
			return
		}
		kind, ok := svixErrorKinds[theirs.Error()]
		require.True(t, ok, "unexpected svix error %q", theirs)
		require.ErrorIs(t, ours, kind, "svix: %v; header %q", theirs, sig)
	})
}

func abs(x int64) int64 {
	if x < 0 {
		if x == math.MinInt64 {
			return math.MaxInt64
		}
		return -x
	}
	return x
}
