package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tlwebhook/tlwebhook"
)

func runVerify(_ context.Context, e *env, args []string) int {
	f := newFlags("verify", "(-request FILE | -body FILE [-id ID] [-timestamp SECONDS] [-signature SIG]) [-secret whsec_...|whpk_...] [-at TIME]", `
Verify checks a captured delivery against the endpoint's key (an HMAC
secret for v1 signatures, a public key for v1a ones) and says whether it
verifies, and if not, exactly why. The delivery is a raw HTTP request file
(-request: request line, headers, a blank line, the body; as written by
"tlwebhook listen -save DIR", dumped by a proxy or written by hand), or its
parts given by flags. It prints:

  note: ...          about reading the input
  headers: ...       ok, or which signature headers are missing
  timestamp: ...     ok, or how many seconds outside the tolerance
  signature: ...     ok, or mismatch; then whether the signature matches a
                     different encoding of the body (trailing newline, CRLF,
                     compact, spaced or pretty-printed JSON, ...)
  hint: ...          what to do about it
  result: verified   or "result: not verified: REASON", from tlwebhook's
                     own Verifier

Verify exits 0 when the delivery verifies and 1 when it does not.`)
	reqFile := f.String("request", "", `raw HTTP request file ("-" for stdin)`)
	bodyFile := f.String("body", "", `body file, byte for byte as received ("-" for stdin)`)
	id := f.String("id", "", "svix-id header value")
	timestamp := f.String("timestamp", "", "svix-timestamp header value")
	signature := f.String("signature", "", "svix-signature header value")
	secretFlag := f.secretFlag(false)
	atFlag := f.String("at", "", "check the timestamp as of this time, Unix seconds or RFC 3339 (default now)")
	tolerance := f.Duration("tolerance", tlwebhook.DefaultTolerance, "accepted age (and clock skew) of the timestamp")
	if code, done := f.parse(e, args); done {
		return code
	}
	partFlags := *bodyFile != "" || *id != "" || *timestamp != "" || *signature != ""
	switch {
	case *reqFile != "" && partFlags:
		return f.usageError(e, "give -request, or -body with -id, -timestamp and -signature, not both")
	case *reqFile == "" && *bodyFile == "":
		return f.usageError(e, "give -request FILE, or -body FILE with -id, -timestamp and -signature")
	case *tolerance <= 0:
		return f.usageError(e, "-tolerance must be positive")
	}
	now := time.Now()
	if *atFlag != "" {
		t, err := parseTime(*atFlag)
		if err != nil {
			return f.usageError(e, "-at: %v", err)
		}
		now = t
	}
	secret, code, ok := f.verifyingKey(e, *secretFlag)
	if !ok {
		return code
	}

	var (
		header = make(http.Header)
		body   []byte
		notes  []string
	)
	if *reqFile != "" {
		data, err := readInput(e, *reqFile)
		if err != nil {
			return f.fail(e, "%v", err)
		}
		header, body, notes, err = readRequest(data)
		if err != nil {
			return f.fail(e, "%s: not an HTTP request: %v", *reqFile, err)
		}
	} else {
		var err error
		if body, err = readInput(e, *bodyFile); err != nil {
			return f.fail(e, "%v", err)
		}
		for name, value := range map[string]string{
			tlwebhook.HeaderSvixID: *id, tlwebhook.HeaderSvixTimestamp: *timestamp, tlwebhook.HeaderSvixSignature: *signature,
		} {
			if value != "" {
				header.Set(name, value)
			}
		}
	}

	v, err := tlwebhook.NewVerifier(secret,
		tlwebhook.WithClock(func() time.Time { return now }),
		tlwebhook.WithTolerance(*tolerance),
		tlwebhook.WithMaxBodyBytes(max(int64(len(body)), tlwebhook.DefaultMaxBodyBytes)))
	if err != nil {
		return f.usageError(e, "%v", err)
	}
	for _, n := range notes {
		fmt.Fprintln(e.stdout, "note: "+n)
	}
	diagnose(e.stdout, newEntryChecker(secret), header, body, now, *tolerance)
	d, err := v.Verify(body, header)
	if err != nil {
		fmt.Fprintln(e.stdout, "result: not verified: "+err.Error())
		return exitFailure
	}
	fmt.Fprintln(e.stdout, "result: verified "+kv("delivery", d.ID))
	return exitOK
}

// parseTime parses Unix seconds or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither Unix seconds nor RFC 3339", s)
	}
	return t, nil
}

// readRequest parses a raw HTTP request and returns its header and body
// bytes, with notes on anything about the framing that may explain a
// mismatch.
func readRequest(data []byte) (http.Header, []byte, []string, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, nil, err
	}
	var notes []string
	var body []byte
	switch {
	case len(req.TransferEncoding) > 0:
		body, err = io.ReadAll(req.Body)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading chunked body: %w", err)
		}
		notes = append(notes, fmt.Sprintf("body is chunked; checking the %d decoded bytes", len(body)))
	case req.Header.Get("Content-Length") != "":
		body, err = io.ReadAll(req.Body)
		if err != nil {
			notes = append(notes, fmt.Sprintf("Content-Length says %d bytes but the file has only %d; checking those", req.ContentLength, len(body)))
		}
	default:
		body, _ = io.ReadAll(br)
		notes = append(notes, fmt.Sprintf("no Content-Length; taking the rest of the file (%d bytes) as the body", len(body)))
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		notes = append(notes, fmt.Sprintf("the file has %s after the %s of body that Content-Length declares; they are not checked (an editor may have added a final newline)",
			bytesCount(len(rest)), bytesCount(len(body))))
	}
	return req.Header, body, notes, nil
}

func bytesCount(n int) string {
	if n == 1 {
		return "1 byte"
	}
	return strconv.Itoa(n) + " bytes"
}

// headerSets are the two sets of signature header names, in the order the
// verifier tries them.
var headerSets = [2][3]string{
	{tlwebhook.HeaderSvixID, tlwebhook.HeaderSvixTimestamp, tlwebhook.HeaderSvixSignature},
	{tlwebhook.HeaderWebhookID, tlwebhook.HeaderWebhookTimestamp, tlwebhook.HeaderWebhookSignature},
}

// entryChecker checks the signature entries of one version against the key
// given to verify.
type entryChecker struct {
	version string // "v1" or "v1a"
	length  int    // characters of a well-formed entry
	match   func(id string, at time.Time, body []byte, entry string) bool
	// otherVersion and otherKey name the other kind of signature and the
	// key that verifies it, for hints.
	otherVersion, otherKey string
	checkKey               string // the final hint after a mismatch
}

// newEntryChecker returns the checker for a key accepted by verifyingKey.
func newEntryChecker(key string) entryChecker {
	if strings.HasPrefix(key, prefixPublicKey) {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(key, prefixPublicKey))
		if err != nil || len(raw) != ed25519.PublicKeySize {
			panic("unreachable: tlwebhook.NewVerifier accepted the public key")
		}
		pub := ed25519.PublicKey(raw)
		return entryChecker{
			version: "v1a", length: 88, otherVersion: "v1", otherKey: "the endpoint's HMAC secret (whsec_...)",
			checkKey: "hint: check the public key: each endpoint has its own key pair, and a rotated key no longer matches; also check that id, timestamp, signature and body come from the same delivery attempt",
			match: func(id string, at time.Time, body []byte, entry string) bool {
				sig, err := base64.StdEncoding.DecodeString(entry)
				if err != nil || len(sig) != ed25519.SignatureSize {
					return false
				}
				msg := append(strconv.AppendInt([]byte(id+"."), at.Unix(), 10), '.')
				return ed25519.Verify(pub, append(msg, body...), sig)
			},
		}
	}
	s := signer(key)
	return entryChecker{
		version: "v1", length: 44, otherVersion: "v1a", otherKey: "the endpoint's public key (whpk_...)",
		checkKey: "hint: check the secret: each endpoint has its own signing secret, and a rotated secret no longer matches; also check that id, timestamp, signature and body come from the same delivery attempt",
		match: func(id string, at time.Time, body []byte, entry string) bool {
			want := strings.TrimPrefix(s.Sign(id, at, body), "v1,")
			return hmac.Equal([]byte(entry), []byte(want))
		},
	}
}

// diagnose explains, line by line, whether and why a delivery does not
// verify. It checks signatures itself, so that it can try other
// encodings of the body.
func diagnose(w io.Writer, c entryChecker, header http.Header, body []byte, now time.Time, tolerance time.Duration) {
	// Headers: choose the set the verifier uses, as Svix does.
	var missing [2][]string
	for i, set := range headerSets {
		for _, name := range set {
			if header.Get(name) == "" {
				missing[i] = append(missing[i], name)
			}
		}
	}
	set := 0
	switch {
	case len(missing[0]) == 0:
	case len(missing[1]) == 0, len(missing[0]) == 3 && len(missing[1]) < 3:
		set = 1
	}
	names := headerSets[set]
	id, ts, sig := header.Get(names[0]), header.Get(names[1]), header.Get(names[2])
	if len(missing[set]) == 0 {
		fmt.Fprintf(w, "headers: ok: %s\n", strings.Join(names[:], ", "))
	} else {
		fmt.Fprintf(w, "headers: missing %s (a delivery needs svix-id, svix-timestamp and svix-signature, or webhook-id, webhook-timestamp and webhook-signature)\n",
			strings.Join(missing[set], ", "))
	}
	for name := range header {
		lower := strings.ToLower(name)
		if (strings.Contains(lower, "svix") || strings.Contains(lower, "webhook-")) && !isSignatureHeader(lower) {
			fmt.Fprintf(w, "hint: header %s is not a signature header name; if it carries one, a proxy renamed it\n", name)
		}
	}

	// Timestamp.
	var tsValue int64
	tsOK := false
	switch {
	case ts == "":
		fmt.Fprintln(w, "timestamp: not checked: no timestamp header")
	default:
		n, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			fmt.Fprintf(w, "timestamp: malformed: %s is not a decimal number of Unix seconds\n", quoteIfNeeded(truncate(ts, 40)))
			break
		}
		tsValue, tsOK = n, true
		checkTimestamp(w, n, now, tolerance)
	}

	// Signature.
	switch {
	case sig == "":
		fmt.Fprintln(w, "signature: not checked: no signature header")
		return
	case id == "":
		fmt.Fprintln(w, "signature: not checked: no id header")
		return
	case !tsOK:
		fmt.Fprintln(w, "signature: not checked: no valid timestamp")
		return
	}
	entries, others := versionEntries(sig, c.version)
	if len(entries) == 0 {
		found := "no entries"
		if len(others) > 0 {
			found = "versions " + quoteIfNeeded(truncate(strings.Join(others, ","), 60))
		}
		if c.version == "v1" {
			fmt.Fprintf(w, "signature: no v1 entry in %s (found %s); Tensorlake signs with v1,BASE64 entries separated by spaces\n",
				names[2], found)
		} else {
			fmt.Fprintf(w, "signature: no v1a entry in %s (found %s); an endpoint with asymmetric signatures sends v1a,BASE64 entries separated by spaces\n",
				names[2], found)
		}
		if slices.Contains(others, c.otherVersion) {
			fmt.Fprintf(w, "hint: the delivery carries %s signatures: verify it with %s\n", c.otherVersion, c.otherKey)
		}
		return
	}
	for i, entry := range entries {
		if len(entry) != c.length {
			fmt.Fprintf(w, "hint: %s entry %d has %d characters; a %s signature has %d (truncated or mangled when copied?)\n",
				c.version, i+1, len(entry), c.version, c.length)
		}
	}
	at := time.Unix(tsValue, 0)
	matches := func(b []byte) int {
		for i, entry := range entries {
			if c.match(id, at, b, entry) {
				return i + 1
			}
		}
		return 0
	}
	if i := matches(body); i > 0 {
		fmt.Fprintf(w, "signature: ok: matches %s entry %d of %d\n", c.version, i, len(entries))
		return
	}
	fmt.Fprintf(w, "signature: mismatch: no %s entry (of %d) matches the body as given (%d bytes)\n", c.version, len(entries), len(body))
	for _, v := range bodyVariants(body) {
		if matches(v.body) > 0 {
			fmt.Fprintf(w, "signature: matches the body %s (%d bytes)\n", v.desc, len(v.body))
			fmt.Fprintln(w, "hint: the bytes checked are not the bytes that were signed: verify the raw request body exactly as received, before any parsing, decoding or re-encoding")
			return
		}
	}
	fmt.Fprintln(w, "signature: no match for any other encoding of the body tried (trailing newline, whitespace, line endings, compact, spaced, pretty-printed or key-sorted JSON)")
	fmt.Fprintln(w, c.checkKey)
	if slices.Contains(others, c.otherVersion) {
		fmt.Fprintf(w, "hint: the delivery also carries %s signatures, which %s verifies\n", c.otherVersion, c.otherKey)
	}
}

func checkTimestamp(w io.Writer, n int64, now time.Time, tolerance time.Duration) {
	signed := time.Unix(n, 0).UTC().Format(time.RFC3339)
	tol := int64(tolerance / time.Second)
	diff := now.Unix() - n // seconds since signing; negative: in the future
	switch {
	case now.Sub(time.Unix(n, 0)) > tolerance:
		fmt.Fprintf(w, "timestamp: too old: signed %ds ago (%s), %ds outside the %ds tolerance\n", diff, signed, diff-tol, tol)
		fmt.Fprintf(w, "hint: a delivery is accepted for %ds after signing (Svix signs each retry afresh); to check an old capture, pass -at with the time it was captured\n", tol)
	case n > now.Add(tolerance).Unix():
		fmt.Fprintf(w, "timestamp: too new: signed %ds in the future (%s), %ds outside the %ds tolerance\n", -diff, signed, -diff-tol, tol)
		fmt.Fprintln(w, "hint: check the receiving machine's clock")
	case diff >= 0:
		fmt.Fprintf(w, "timestamp: ok: signed %ds ago (%s), within the %ds tolerance\n", diff, signed, tol)
	default:
		fmt.Fprintf(w, "timestamp: ok: signed %ds in the future (%s), within the %ds tolerance\n", -diff, signed, tol)
	}
	if n > 100_000_000_000 {
		fmt.Fprintln(w, "hint: the timestamp looks like milliseconds; Svix sends Unix seconds")
	}
}

func isSignatureHeader(lower string) bool {
	for _, set := range headerSets {
		for _, name := range set {
			if lower == name {
				return true
			}
		}
	}
	return false
}

// versionEntries splits a signature header as Svix does (entries separated
// by spaces, each "version,signature") and returns the signatures of
// version and the versions of the other entries ("?" for an entry without
// a comma).
func versionEntries(header, want string) (sigs, otherVersions []string) {
	for _, entry := range strings.Split(header, " ") {
		version, value, ok := strings.Cut(entry, ",")
		switch {
		case ok && version == want:
			value, _, _ = strings.Cut(value, ",")
			sigs = append(sigs, value)
		case ok:
			otherVersions = append(otherVersions, version)
		case entry != "":
			otherVersions = append(otherVersions, "?")
		}
	}
	return sigs, otherVersions
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
