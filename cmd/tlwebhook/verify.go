package main

import (
	"context"
	"errors"
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
parts given by flags. The verdict and its explanation come from
tlwebhook's own Verifier (Verifier.Diagnose). It prints:

  note: ...          about reading the input
  headers: ...       ok, or which signature headers are missing
  timestamp: ...     ok, or how many seconds outside the tolerance
  signature: ...     which entry matches; or the entries that do not, and
                     the re-encoding of the body that would match, if any
                     (trailing newline, CRLF, compacted or indented JSON...)
  hint: ...          what to do about it
  result: verified   or "result: not verified: REASON"

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
	dg := v.Diagnose(body, header)
	printDiagnosis(e.stdout, dg, header, len(body), *tolerance)
	if errors.Is(dg.Err, tlwebhook.ErrTimestampTooOld) {
		fmt.Fprintln(e.stdout, "hint: to check a capture as of its capture time, pass that time with -at (listen -save puts it in the file name)")
	}
	if dg.Err != nil {
		fmt.Fprintln(e.stdout, "result: not verified: "+dg.Err.Error())
		return exitFailure
	}
	fmt.Fprintln(e.stdout, "result: verified "+kv("delivery", dg.Delivery.ID))
	return exitOK
}

// printDiagnosis prints the headers:, timestamp:, signature: and hint:
// lines of a diagnosis made by the library's [tlwebhook.Verifier.Diagnose];
// it decides nothing itself. header is the delivery's header, for the
// values to show; bodyLen the length of the body checked.
func printDiagnosis(w io.Writer, dg tlwebhook.Diagnosis, header http.Header, bodyLen int, tolerance time.Duration) {
	missing := func(name string) bool { return slices.Contains(dg.Missing, name) }
	if len(dg.Missing) == 0 {
		fmt.Fprintf(w, "headers: ok: %s\n", strings.Join(dg.Headers[:], ", "))
	} else {
		fmt.Fprintf(w, "headers: missing %s (a delivery needs svix-id, svix-timestamp and svix-signature, or webhook-id, webhook-timestamp and webhook-signature)\n",
			strings.Join(dg.Missing, ", "))
	}

	// The timestamp is checked once the three headers are there; until
	// then the diagnosis has no verdict on it.
	tol := int64(tolerance / time.Second)
	age := int64(dg.Age.Round(time.Second) / time.Second)
	signed := dg.Delivery.Timestamp.UTC().Format(time.RFC3339)
	tsOK := false
	switch {
	case missing(dg.Headers[1]):
		fmt.Fprintln(w, "timestamp: not checked: no timestamp header")
	case len(dg.Missing) > 0:
		fmt.Fprintln(w, "timestamp: not checked: a signature header is missing")
	case dg.Delivery.Timestamp.IsZero():
		fmt.Fprintf(w, "timestamp: malformed: %s is not Unix seconds\n", quoteIfNeeded(fmt.Sprintf("%.40s", header.Get(dg.Headers[1]))))
	case errors.Is(dg.Err, tlwebhook.ErrTimestampTooOld):
		fmt.Fprintf(w, "timestamp: too old: signed %ds ago (%s), %ds outside the %ds tolerance\n", age, signed, age-tol, tol)
	case errors.Is(dg.Err, tlwebhook.ErrTimestampTooNew):
		fmt.Fprintf(w, "timestamp: too new: signed %ds in the future (%s), %ds outside the %ds tolerance\n", -age, signed, -age-tol, tol)
	case age >= 0:
		tsOK = true
		fmt.Fprintf(w, "timestamp: ok: signed %ds ago (%s), within the %ds tolerance\n", age, signed, tol)
	default:
		tsOK = true
		fmt.Fprintf(w, "timestamp: ok: signed %ds in the future (%s), within the %ds tolerance\n", -age, signed, tol)
	}

	switch {
	case missing(dg.Headers[2]):
		fmt.Fprintln(w, "signature: not checked: no signature header")
	case missing(dg.Headers[0]):
		fmt.Fprintln(w, "signature: not checked: no id header")
	case !tsOK && dg.Delivery.Timestamp.IsZero():
		fmt.Fprintln(w, "signature: not checked: no valid timestamp")
	default:
		printEntries(w, dg, bodyLen)
	}
	for _, h := range dg.Hints {
		fmt.Fprintln(w, "hint: "+h)
	}
}

// printEntries prints the verdict on the signature header's entries.
func printEntries(w io.Writer, dg tlwebhook.Diagnosis, bodyLen int) {
	n := len(dg.Entries)
	for i, e := range dg.Entries {
		if e.Matches {
			fmt.Fprintf(w, "signature: ok: entry %d of %d (%s) matches\n", i+1, n, e.Version)
			return
		}
	}
	described := make([]string, n)
	for i, e := range dg.Entries {
		switch {
		case e.Version == "":
			described[i] = "an entry without a version"
		case e.WellFormed:
			described[i] = fmt.Sprintf("%.16s (%d characters)", e.Version, e.Length)
		default:
			described[i] = fmt.Sprintf("%.16s (%d characters, malformed)", e.Version, e.Length)
		}
	}
	fmt.Fprintf(w, "signature: mismatch: no entry of %d matches the body as given (%d bytes): %s\n", n, bodyLen, strings.Join(described, ", "))
	if dg.Reencoding != "" {
		fmt.Fprintf(w, "signature: the body verifies once %s\n", dg.Reencoding)
	}
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
