package tlwebhook

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A Verifier checks the Svix signature of deliveries. It is safe for
// concurrent use. Create one with [NewVerifier].
//
// [Verifier.Verify] is pure: bytes and headers in, a [Delivery] or an error
// out. [Verifier.Middleware] runs it on HTTP requests.
type Verifier struct {
	hmacKeys  []*macKey
	edKeys    []ed25519.PublicKey
	tolerance int64 // seconds
	tolDur    time.Duration
	now       func() time.Time
	maxBody   int64
	logger    *slog.Logger
	http      *verifierConfig // the HTTP pipeline's settings: source, auth
	// matched is set once any delivery has verified since start-up; see
	// noteMismatch.
	matched  atomic.Bool
	failures atomic.Int64
	warnOnce sync.Once
	diag     diagnosisGate // one 401 diagnosis at a time, see explain
	logs     logLimiter    // rejection log records, see reject
}

// macKey is one accepted HMAC secret with a pool of pre-keyed HMAC states.
type macKey struct {
	pool sync.Pool // of *macState
}

// macState is a reusable HMAC computation with its scratch buffers, so that
// verifying a valid delivery allocates nothing.
type macState struct {
	h      hash.Hash
	prefix []byte
	sum    [sha256.Size]byte
	enc    [sigLen]byte
}

const (
	// sigLen is the length of a base64-encoded HMAC-SHA256 (v1 entry).
	sigLen = 44
	// edSigLen is the length of a base64-encoded Ed25519 signature (v1a).
	edSigLen = 88
	// maxSignatureEntries bounds the work spent on one signature header.
	maxSignatureEntries = 64
	// maxAsymmetricEntries bounds the v1a entries checked per key: Svix signs
	// with at most two keys at once (the old and the new one while a key is
	// rotated), and each check costs about 50 us.
	maxAsymmetricEntries = 2
	// minKeyBytes is the shortest decoded HMAC secret accepted. Svix issues
	// 24-byte keys; anything under 16 bytes is a configuration mistake.
	minKeyBytes = 16
)

// Key prefixes as Svix shows them.
const (
	prefixSecret     = "whsec_"
	prefixPublicKey  = "whpk_"
	prefixPrivateKey = "whsk_"
)

// NewVerifier returns a [Verifier] for the given endpoint key: an HMAC
// secret as shown by Tensorlake (whsec_ followed by base64, or the bare
// base64), or an Ed25519 public key (whpk_ followed by the base64 of 32
// bytes) for an endpoint configured with asymmetric signatures. More keys,
// of either kind, are added with [WithSecrets]. It returns an error wrapping
// [ErrInvalidSecret] if a key does not decode, an HMAC secret is shorter
// than 16 bytes, or a public key is not the canonical 32-byte encoding of a
// point of the curve of large order (a point of small order, such as the
// identity, would accept forged signatures), and one wrapping
// [ErrInvalidOption] for an unusable option.
func NewVerifier(secret string, opts ...VerifierOption) (*Verifier, error) {
	cfg, err := newVerifierConfig(secret, opts)
	if err != nil {
		return nil, err
	}
	return newVerifier(cfg)
}

func newVerifier(cfg *verifierConfig) (*Verifier, error) {
	v := &Verifier{
		tolerance: int64(cfg.tolerance / time.Second),
		tolDur:    cfg.tolerance,
		now:       cfg.now,
		maxBody:   cfg.maxBodyBytes,
		logger:    cfg.logger,
		http:      cfg,
	}
	if cfg.tolerance%time.Second != 0 {
		v.tolerance = -1 // sub-second tolerance: compare as durations
	}
	for i, s := range cfg.secrets {
		if err := v.addKey(s); err != nil {
			if len(cfg.secrets) > 1 {
				return nil, fmt.Errorf("secret %d: %w", i+1, err)
			}
			return nil, err
		}
	}
	// Keep no copy of the secrets beyond the HMAC states: nothing that
	// prints or dumps the verifier can reach them.
	clear(cfg.secrets)
	cfg.secrets = nil
	return v, nil
}

// String describes the verifier without revealing any key.
func (v *Verifier) String() string {
	return fmt.Sprintf("tlwebhook.Verifier{secrets: %d, publicKeys: %d, tolerance: %v, maxBodyBytes: %d}",
		len(v.hmacKeys), len(v.edKeys), v.tolDur, v.maxBody)
}

// GoString is like String, so that %#v reveals no key either.
func (v *Verifier) GoString() string { return v.String() }

// LogValue is like String, for [log/slog].
func (v *Verifier) LogValue() slog.Value { return slog.StringValue(v.String()) }

// checkTimestamp applies the tolerance in both directions, with the same
// edges as Svix's libraries: exactly the tolerance is accepted.
func (v *Verifier) checkTimestamp(ts int64) error {
	now := v.now()
	if v.tolerance >= 0 {
		// Whole seconds: integer arithmetic, the common case.
		// ts is compared, never subtracted, so that no value overflows.
		sec := now.Unix()
		if oldest := sec - v.tolerance; ts < oldest || (ts == oldest && now.Nanosecond() > 0) {
			return v.timestampError(now, ts)
		}
		if ts > sec+v.tolerance {
			return v.timestampError(now, ts)
		}
		return nil
	}
	if now.Sub(time.Unix(ts, 0)) > v.tolDur || ts > now.Add(v.tolDur).Unix() {
		return v.timestampError(now, ts)
	}
	return nil
}

func (v *Verifier) timestampError(now time.Time, ts int64) error {
	// The direction is decided on integers: time.Unix wraps for the largest
	// timestamps, which would report a far-future one as too old.
	if sec := now.Unix(); ts < sec || ts == sec && now.Nanosecond() > 0 {
		return fmt.Errorf("%w: signed %s ago, tolerance %v", ErrTimestampTooOld, roundDuration(now.Sub(time.Unix(ts, 0))), v.tolDur)
	}
	if ts-now.Unix() > int64(math.MaxInt64/time.Second) {
		return fmt.Errorf("%w: signed more than 290 years in the future, tolerance %v", ErrTimestampTooNew, v.tolDur)
	}
	return fmt.Errorf("%w: signed %s in the future, tolerance %v", ErrTimestampTooNew, roundDuration(time.Unix(ts, 0).Sub(now)), v.tolDur)
}

func roundDuration(d time.Duration) string {
	if d >= time.Second {
		d = d.Round(time.Second)
	}
	return d.String()
}

// checkHeaders performs every check that needs no body.
func (v *Verifier) checkHeaders(h http.Header) (sigHeaders, error) {
	sh, err := parseHeaders(h)
	if err != nil {
		return sh, err
	}
	if err := v.checkTimestamp(sh.timestamp); err != nil {
		return sh, err
	}
	rest, n := v.firstCandidate(sh.signature)
	if n == 0 {
		return sh, fmt.Errorf("%w: header has no well-formed entry for the configured keys", ErrNoMatchingSignature)
	}
	sh.signature, sh.entries = rest, n
	return sh, nil
}

// Verify checks that payload, the raw request body, is signed by one of the
// verifier's keys according to header, and that the signature's timestamp
// is within the tolerance. It returns the [Delivery] on success. Errors wrap
// one of [ErrMissingHeaders], [ErrInvalidHeaders], [ErrTimestampTooOld],
// [ErrTimestampTooNew], [ErrNoMatchingSignature] or [ErrPayloadTooLarge].
//
// The payload must be the body exactly as received: re-serialised JSON does
// not verify. Verify does not allocate for a valid delivery.
func (v *Verifier) Verify(payload []byte, header http.Header) (Delivery, error) {
	if int64(len(payload)) > v.maxBody {
		return Delivery{}, fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(payload), v.maxBody)
	}
	sh, err := v.checkHeaders(header)
	if err != nil {
		return Delivery{}, err
	}
	if err := v.checkSignature(sh, payload); err != nil {
		return Delivery{}, err
	}
	return Delivery{ID: sh.id, Timestamp: time.Unix(sh.timestamp, 0)}, nil
}

// candidate reports whether an entry is well-formed for a kind of key the
// verifier has: the cheap checks before any signature work.
func (v *Verifier) candidate(version, sig string) bool {
	switch version {
	case "v1":
		return len(sig) == sigLen && len(v.hmacKeys) > 0
	case "v1a":
		return wellFormedEdSig(sig) && len(v.edKeys) > 0
	}
	return false
}

// firstCandidate returns the header from its first entry that could match,
// and how many entries from there lie within the first maxSignatureEntries,
// so that a request without a candidate costs no signature work and the
// later scan starts there. It returns 0 entries when there is none.
func (v *Verifier) firstCandidate(header string) (string, int) {
	rest := header
	for n := 0; n < maxSignatureEntries && rest != ""; n++ {
		version, sig, r, ok := nextEntry(rest)
		if ok && v.candidate(version, sig) {
			return rest, maxSignatureEntries - n
		}
		rest = r
	}
	return "", 0
}

// checkSignature checks the v1 entries against each HMAC key, then the v1a
// entries against each public key.
func (v *Verifier) checkSignature(sh sigHeaders, payload []byte) error {
	if v.checkHMAC(sh, payload) || len(v.edKeys) > 0 && v.checkEd25519(sh, payload) {
		v.matched.Store(true)
		return nil
	}
	return ErrNoMatchingSignature
}

// checkHMAC computes the expected signature under each HMAC key (one HMAC
// per key) and compares it in constant time with every v1 entry.
func (v *Verifier) checkHMAC(sh sigHeaders, payload []byte) bool {
	for _, k := range v.hmacKeys {
		st := k.pool.Get().(*macState)
		st.h.Reset()
		st.prefix = sh.appendPrefix(st.prefix[:0])
		st.h.Write(st.prefix)
		st.h.Write(payload)
		st.h.Sum(st.sum[:0])
		base64.StdEncoding.Encode(st.enc[:], st.sum[:])
		matched := matchAny(sh.signature, sh.entries, st.enc[:])
		if cap(st.prefix) <= 1024 {
			k.pool.Put(st)
		}
		if matched {
			return true
		}
	}
	return false
}

// matchAny compares expected with every v1 entry among the first entries
// of header, in constant time per entry.
func matchAny(header string, entries int, expected []byte) bool {
	found := 0
	rest := header
	for n := 0; n < entries && rest != ""; n++ {
		version, sig, r, ok := nextEntry(rest)
		rest = r
		if ok && version == "v1" {
			found |= constantTimeEqual(sig, expected)
		}
	}
	return found == 1
}

func constantTimeEqual(a string, b []byte) int {
	if len(a) != len(b) {
		return 0
	}
	var x byte
	for i := 0; i < len(b); i++ {
		x |= a[i] ^ b[i]
	}
	return subtle.ConstantTimeByteEq(x, 0)
}
