package tlwebhook

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Diagnosis of deliveries that do not verify: what can be told about the
// cause without revealing anything, for the 401's log record and for
// [Verifier.Diagnose].

// A Diagnosis explains the verdict of [Verifier.Verify] on one delivery in
// terms a person can act on: which signature headers were read, how old
// the signature is, what the signature header carries and, when the body
// does not match, whether a common re-encoding of it does. It is made by
// [Verifier.Diagnose]; the tlwebhook command's verify prints it.
type Diagnosis struct {
	// Err is the verdict of [Verifier.Verify]: nil when the delivery
	// verifies.
	Err error
	// Delivery holds what the headers tell: the ID, and the Timestamp when
	// it parses.
	Delivery Delivery
	// Headers names the id, timestamp and signature headers read: the
	// svix-* set when it is complete or closer to complete, else the
	// webhook-* set.
	Headers [3]string
	// Missing names the headers of that set that are missing or empty.
	Missing []string
	// Age is how long before the verifier's clock the delivery was signed;
	// negative when it was signed in the future. Zero when the timestamp
	// is missing or malformed.
	Age time.Duration
	// Entries are the entries of the signature header, in order, at most
	// the 64 that verification examines.
	Entries []SignatureEntry
	// Reencoding is set when the body does not match but a common
	// re-encoding of it does; it completes "the body verifies once ...",
	// for example "compacted" or "re-serialised by Go's json.Marshal of a
	// map[string]any (...)". The bytes checked are then not the bytes that
	// were signed: verify the raw body, before any parsing.
	Reencoding string
	// Hints say what to do, the most likely cause first.
	Hints []string
}

// A SignatureEntry describes one entry of a signature header.
type SignatureEntry struct {
	// Version is the entry's version: "v1" (HMAC), "v1a" (Ed25519), another
	// one, or "" for an entry without a comma.
	Version string
	// Length is the length of the signature, in characters.
	Length int
	// WellFormed reports whether the signature has the form of its
	// version: 44 characters of base64 for v1, 88 for v1a.
	WellFormed bool
	// Matches reports whether the entry matches the body, as received,
	// under one of the verifier's keys.
	Matches bool
}

// Diagnose verifies a delivery as [Verifier.Verify] does and explains the
// verdict; see [Diagnosis]. Unlike the diagnosis that a [Handler] logs
// with a 401, it is neither rate-limited nor skipped when another one
// runs: call it on deliveries a person asked about, such as a capture.
// Its time is linear in the payload and its memory a small multiple of it.
func (v *Verifier) Diagnose(payload []byte, header http.Header) Diagnosis {
	var dg Diagnosis
	d, err := v.Verify(payload, header)
	dg.Err, dg.Delivery = err, d

	// Headers: the set parseHeaders reads, else the one closer to complete.
	sets := [2][3]string{
		{HeaderSvixID, HeaderSvixTimestamp, HeaderSvixSignature},
		{HeaderWebhookID, HeaderWebhookTimestamp, HeaderWebhookSignature},
	}
	var missing [2][]string
	for i, set := range sets {
		for _, name := range set {
			if header.Get(name) == "" {
				missing[i] = append(missing[i], name)
			}
		}
	}
	set := 0
	if len(missing[0]) > 0 && (len(missing[1]) == 0 || len(missing[0]) == 3 && len(missing[1]) < 3) {
		set = 1
	}
	dg.Headers, dg.Missing = sets[set], missing[set]
	for name := range header {
		lower := strings.ToLower(name)
		if (strings.Contains(lower, "svix") || strings.Contains(lower, "webhook-")) && !isSignatureHeader(lower, sets) {
			dg.Hints = append(dg.Hints, fmt.Sprintf("header %s is not a signature header name; if it carries one, a proxy renamed it", truncate(name, 64)))
		}
	}
	id, ts, sig := header.Get(dg.Headers[0]), header.Get(dg.Headers[1]), header.Get(dg.Headers[2])
	if dg.Delivery.ID == "" {
		dg.Delivery.ID = id
	}

	sh := sigHeaders{id: id, signature: sig}
	var herr error
	if ts == "" {
		herr = ErrMissingHeaders
	} else if sh.timestamp, sh.tsDigits, herr = parseTimestamp(ts); herr == nil {
		at := time.Unix(sh.timestamp, 0)
		dg.Delivery.Timestamp = at
		dg.Age = v.now().Sub(at)
		if sh.timestamp > 100_000_000_000 {
			dg.Hints = append(dg.Hints, "the timestamp looks like milliseconds; Svix sends Unix seconds")
		}
	}
	switch {
	case errors.Is(err, ErrTimestampTooOld):
		dg.Hints = append(dg.Hints, fmt.Sprintf("a delivery is accepted for %v after signing (Svix signs each retry afresh); to check an old capture, verify it as of the time it was captured", v.tolDur))
	case errors.Is(err, ErrTimestampTooNew):
		dg.Hints = append(dg.Hints, "check the receiving machine's clock")
	}

	// Entries, each checked on its own against every key.
	var versions struct{ v1, v1a, other bool }
	rest := sig
	for n := 0; n < maxSignatureEntries && rest != ""; n++ {
		entry, _, _ := strings.Cut(rest, " ")
		version, s, r, ok := nextEntry(rest)
		rest = r
		if !ok {
			dg.Entries = append(dg.Entries, SignatureEntry{Length: len(entry)})
			continue
		}
		e := SignatureEntry{Version: version, Length: len(s)}
		switch version {
		case "v1":
			versions.v1 = true
			e.WellFormed = len(s) == sigLen
		case "v1a":
			versions.v1a = true
			e.WellFormed = wellFormedEdSig(s)
		default:
			versions.other = true
		}
		if e.WellFormed && herr == nil && id != "" {
			one := sh
			one.signature, one.entries = version+","+s, 1
			e.Matches = v.matches(one, payload)
		}
		dg.Entries = append(dg.Entries, e)
	}
	if err == nil || herr != nil || id == "" || sig == "" {
		return dg
	}

	// Signatures present but none matching: which kind of key is missing,
	// or which re-encoding the body went through.
	matched := false
	for _, e := range dg.Entries {
		matched = matched || e.Matches
	}
	switch {
	case matched:
		// The signature matches: the verdict is about the timestamp.
	case len(v.hmacKeys) == 0 && !versions.v1a && versions.v1:
		dg.Hints = append(dg.Hints, "the delivery carries v1 (HMAC) signatures only: verify it with the endpoint's signing secret (whsec_...)")
	case len(v.edKeys) == 0 && !versions.v1 && versions.v1a:
		dg.Hints = append(dg.Hints, "the delivery carries v1a (Ed25519) signatures only: verify it with the endpoint's public key (whpk_...)")
	case !versions.v1 && !versions.v1a:
		dg.Hints = append(dg.Hints, "the signature header has no v1 or v1a entry; Svix sends entries such as v1,BASE64 separated by spaces")
	default:
		sh.signature, sh.entries = sig, maxSignatureEntries
		re := newReencoder(payload)
		if how := re.find(func(b []byte) bool { return v.matches(sh, b) }); how != "" {
			dg.Reencoding = how
			dg.Hints = append(dg.Hints, "the bytes checked are not the bytes that were signed: verify the raw request body exactly as received, before any parsing, decoding or re-encoding")
			break
		}
		if re.goMarshalled() {
			dg.Hints = append(dg.Hints, "the body has the form Go's json.Marshal gives a decoded map[string]any (compact, keys sorted at every level, <, > and & escaped): a middleware likely decoded and re-encoded it; verify the raw request body exactly as received, and if nothing touches it, the key is wrong")
			break
		}
		for _, e := range dg.Entries {
			if (e.Version == "v1" || e.Version == "v1a") && !e.WellFormed {
				dg.Hints = append(dg.Hints, fmt.Sprintf("a %s entry has %d characters, not %d: truncated or mangled when copied?", e.Version, e.Length, map[string]int{"v1": sigLen, "v1a": edSigLen}[e.Version]))
				break
			}
		}
		dg.Hints = append(dg.Hints, "check the key: each endpoint has its own signing secret or key pair, and a rotated key no longer matches; also check that id, timestamp, signature and body come from the same delivery attempt")
	}
	return dg
}

func isSignatureHeader(lower string, sets [2][3]string) bool {
	for _, set := range sets {
		for _, name := range set {
			if lower == name {
				return true
			}
		}
	}
	return false
}

// matches reports whether an entry of sh matches payload under any key,
// without marking the verifier as having verified anything.
func (v *Verifier) matches(sh sigHeaders, payload []byte) bool {
	return v.checkHMAC(sh, payload) || len(v.edKeys) > 0 && v.checkEd25519(sh, payload)
}

// mismatchWarnAfter is how many failed signature checks, with no success
// since start-up, make the verifier warn once that its key is likely wrong.
const mismatchWarnAfter = 5

// diagnosisEvery bounds how often a Verifier looks for a re-encoding that
// explains a failed signature in a 401's log record; one runs at a time,
// and a failure that arrives meanwhile is logged without it.
const diagnosisEvery = time.Second

// diagnosisGate lets one diagnosis run at a time, at most once per
// interval, per Verifier.
type diagnosisGate struct {
	busy atomic.Bool
	last atomic.Int64 // unix nanoseconds of the last start
}

// enter reports whether a diagnosis may start now; the caller must call
// leave when it does.
func (g *diagnosisGate) enter(now time.Time) bool {
	last := g.last.Load()
	if last != 0 && now.UnixNano()-last < int64(diagnosisEvery) {
		return false
	}
	if !g.busy.CompareAndSwap(false, true) {
		return false
	}
	g.last.Store(now.UnixNano())
	return true
}

func (g *diagnosisGate) leave() { g.busy.Store(false) }

// explain adds to a signature error what can be told about its cause: a
// body consumed before the handler, a body re-encoded by a middleware, or a
// key that has verified nothing since start-up. The search for a
// re-encoding is bounded (see reencode.go) and gated per Verifier.
func (v *Verifier) explain(r *http.Request, sh sigHeaders, body []byte, err error) error {
	if len(body) == 0 && r.ContentLength > 0 {
		return fmt.Errorf("%w (the body was empty although %d bytes were declared: did a middleware read it before the handler?)", err, r.ContentLength)
	}
	if !v.matched.Load() && v.failures.Add(1) == mismatchWarnAfter {
		v.warnOnce.Do(func() {
			v.logger.WarnContext(r.Context(), "tlwebhook: no delivery has verified since start-up: the configured secret is likely wrong, or was rotated without adding the new one (WithSecrets)",
				"failed", mismatchWarnAfter)
		})
	}
	if now := time.Now(); !v.logger.Enabled(r.Context(), slog.LevelWarn) || v.logs.full(now) || !v.diag.enter(now) {
		return err
	}
	defer v.diag.leave()
	re := newReencoder(body)
	if how := re.find(func(b []byte) bool { return v.matches(sh, b) }); how != "" {
		return fmt.Errorf("%w (the body verifies once %s: a middleware likely re-encoded it; verify the raw bytes)", err, how)
	}
	if re.goMarshalled() {
		return fmt.Errorf("%w (the body has the form Go's json.Marshal gives a decoded map[string]any: compact, keys sorted at every level, <, > and & escaped; a middleware likely decoded and re-encoded it: verify the raw bytes; if nothing touches the body, check the secret)", err)
	}
	if !re.isJSON() {
		return fmt.Errorf("%w (the body is not valid JSON: it may have been altered or decompressed/recompressed on the way)", err)
	}
	return err
}
