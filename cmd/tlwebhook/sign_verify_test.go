package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// parseHeaderLines reads "name: value" lines.
func parseHeaderLines(t *testing.T, out string) http.Header {
	t.Helper()
	h := make(http.Header)
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		name, value, ok := strings.Cut(line, ": ")
		require.True(t, ok, "line %q", line)
		h.Add(name, value)
	}
	return h
}

func TestSign(t *testing.T) {
	const (
		katSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		katBody   = `{"test": 2432232314}`
	)
	t.Run("known answer", func(t *testing.T) {
		r := runCmd(t, katBody, noEnv, "sign", "-secret", katSecret, "-id", "msg_p5jXN8AQM9LWM0D4loKWxJek", "-timestamp", "1614265330")
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.Equal(t, "svix-id: msg_p5jXN8AQM9LWM0D4loKWxJek\nsvix-timestamp: 1614265330\nsvix-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n", r.stdout)
		assert.Equal(t, "signed 20 bytes; send them unchanged (curl --data-binary @FILE)\n", r.stderr)
	})

	bodies := map[string]string{
		"sample":          string(tlwebhooktest.Sample("tensorlake.sandbox.failed")),
		"trailing spaces": "{\"a\": 1}  \n\n",
		"empty":           "",
		"binary":          "\x00\xff\r\n",
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			secret := tlwebhooktest.NewSecret()
			r := runCmd(t, body, noEnv, "sign", "-secret", secret)
			require.Equal(t, exitOK, r.code, r.stderr)
			h := parseHeaderLines(t, r.stdout)
			assert.Len(t, h, 3)
			assert.True(t, strings.HasPrefix(h.Get("svix-id"), "msg_"))

			wh, err := svix.NewWebhook(secret)
			require.NoError(t, err)
			assert.NoError(t, wh.Verify([]byte(body), h), "svix rejects the headers")
			assert.Error(t, wh.Verify([]byte(body+" "), h), "svix accepts another body")
		})
	}

	t.Run("body file and env secret", func(t *testing.T) {
		secret := tlwebhooktest.NewSecret()
		path := filepath.Join(t.TempDir(), "body.json")
		require.NoError(t, os.WriteFile(path, []byte(`{"x":1}`), 0o600))
		r := runCmd(t, "ignored stdin", func(k string) string {
			if k == envSecret {
				return secret
			}
			return ""
		}, "sign", "-body", path)
		require.Equal(t, exitOK, r.code, r.stderr)
		wh, err := svix.NewWebhook(secret)
		require.NoError(t, err)
		assert.NoError(t, wh.Verify([]byte(`{"x":1}`), parseHeaderLines(t, r.stdout)))
	})
}

// signed is a delivery signed by svix's own library, the oracle.
type signed struct {
	id, ts, sig string
}

func svixSign(t *testing.T, secret, id string, ts int64, body string) signed {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	sig, err := wh.Sign(id, time.Unix(ts, 0), []byte(body))
	require.NoError(t, err)
	return signed{id: id, ts: strconv.FormatInt(ts, 10), sig: sig}
}

// rawRequest renders an HTTP/1.1 request with CRLF line endings.
func rawRequest(headers []string, body string, contentLength bool) string {
	var b strings.Builder
	b.WriteString("POST /webhooks/tensorlake HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if contentLength {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

func TestVerify(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	const ts = 1700000000
	at := strconv.Itoa(ts + 42) // checked 42 s after signing
	id := "msg_2LhverifyTEST"
	compact := `{"job_id":"parse_1","status":"pending","created_at":"2023-10-01T12:00:00Z"}`
	fixture := string(tlwebhooktest.Sample("tensorlake.document_ingestion.job.created")) // 4-space indent, final newline
	good := svixSign(t, secret, id, ts, compact)
	other := svixSign(t, tlwebhooktest.NewSecret(), id, ts, compact)

	flags := func(s signed, body string) (args []string, stdin string) {
		return []string{"-id", s.id, "-timestamp", s.ts, "-signature", s.sig, "-body", "-"}, body
	}
	type tc struct {
		name     string
		args     []string // after "verify -secret S -at AT"
		stdin    string
		wantCode int
		want     []string // lines (or line prefixes ending in "…") in order
	}
	var tests []tc
	add := func(c tc) { tests = append(tests, c) }

	args, stdin := flags(good, compact)
	add(tc{"good delivery by flags", args, stdin, exitOK, []string{
		"headers: ok: svix-id, svix-timestamp, svix-signature",
		"timestamp: ok: signed 42s ago (2023-11-14T22:13:20Z), within the 300s tolerance",
		"signature: ok: entry 1 of 1 (v1) matches",
		"result: verified delivery=" + id,
	}})
	add(tc{"good request file", []string{"-request", "-"}, rawRequest([]string{
		"Svix-Id: " + good.id, "Svix-Timestamp: " + good.ts, "Svix-Signature: " + good.sig}, compact, true), exitOK, []string{
		"headers: ok: svix-id, svix-timestamp, svix-signature",
		"timestamp: ok: …",
		"signature: ok: entry 1 of 1 (v1) matches",
		"result: verified delivery=" + id,
	}})
	add(tc{"webhook-* headers, no Content-Length, final newline", []string{"-request", "-"}, rawRequest([]string{
		"webhook-id: " + good.id, "webhook-timestamp: " + good.ts, "webhook-signature: " + good.sig}, compact, false), exitOK, []string{
		"note: no Content-Length; taking the rest of the file (" + strconv.Itoa(len(compact)) + " bytes) as the body",
		"headers: ok: webhook-id, webhook-timestamp, webhook-signature",
		"timestamp: ok: …",
		"signature: ok: entry 1 of 1 (v1) matches",
		"result: verified …",
	}})
	add(tc{"editor added a newline after the body", []string{"-request", "-"}, rawRequest([]string{
		"Svix-Id: " + good.id, "Svix-Timestamp: " + good.ts, "Svix-Signature: " + good.sig}, compact, true) + "\n", exitOK, []string{
		"note: the file has 1 byte after the " + strconv.Itoa(len(compact)) + " bytes of body that Content-Length declares; …",
		"headers: ok: …",
		"timestamp: ok: …",
		"signature: ok: …",
		"result: verified …",
	}})
	args, stdin = flags(signed{good.id, good.ts, other.sig + " " + good.sig}, compact)
	add(tc{"rotation, second entry matches", args, stdin, exitOK, []string{
		"headers: ok: …", "timestamp: ok: …", "signature: ok: entry 2 of 2 (v1) matches", "result: verified …",
	}})

	add(tc{"missing signature header", []string{"-id", good.id, "-timestamp", good.ts, "-body", "-"}, compact, exitFailure, []string{
		"headers: missing svix-signature (a delivery needs …",
		"timestamp: not checked: a signature header is missing",
		"signature: not checked: no signature header",
		"result: not verified: tlwebhook: missing signature headers",
	}})
	add(tc{"missing id header", []string{"-timestamp", good.ts, "-signature", good.sig, "-body", "-"}, compact, exitFailure, []string{
		"headers: missing svix-id (…",
		"timestamp: not checked: a signature header is missing",
		"signature: not checked: no id header",
		"result: not verified: tlwebhook: missing signature headers",
	}})
	add(tc{"only an id header", []string{"-request", "-"}, rawRequest([]string{"svix-id: " + id}, compact, true), exitFailure, []string{
		"headers: missing svix-timestamp, svix-signature (…",
		"timestamp: not checked: no timestamp header",
		"signature: not checked: no signature header",
		"result: not verified: tlwebhook: missing signature headers",
	}})
	add(tc{"header renamed by a proxy", []string{"-request", "-"}, rawRequest([]string{
		"Svix-Id: " + good.id, "Svix-Timestamp: " + good.ts, "X-Svix-Signature: " + good.sig}, compact, true), exitFailure, []string{
		"headers: missing svix-signature (…",
		"timestamp: not checked: …",
		"signature: not checked: no signature header",
		"hint: header X-Svix-Signature is not a signature header name; if it carries one, a proxy renamed it",
		"result: not verified: …",
	}})

	stale := svixSign(t, secret, id, ts-3600, compact)
	args, stdin = flags(stale, compact)
	add(tc{"stale", args, stdin, exitFailure, []string{
		"headers: ok: …",
		"timestamp: too old: signed 3642s ago (2023-11-14T21:13:20Z), 3342s outside the 300s tolerance",
		"signature: ok: entry 1 of 1 (v1) matches",
		"hint: a delivery is accepted for 5m0s after signing …",
		"hint: to check a capture as of its capture time, pass that time with -at (listen -save puts it in the file name)",
		"result: not verified: tlwebhook: timestamp too old…",
	}})
	future := svixSign(t, secret, id, ts+642, compact)
	args, stdin = flags(future, compact)
	add(tc{"from the future", args, stdin, exitFailure, []string{
		"headers: ok: …",
		"timestamp: too new: signed 600s in the future (2023-11-14T22:24:02Z), 300s outside the 300s tolerance",
		"signature: ok: …",
		"hint: check the receiving machine's clock",
		"result: not verified: tlwebhook: timestamp too new…",
	}})
	millis := svixSign(t, secret, id, ts*1000, compact)
	args, stdin = flags(millis, compact)
	add(tc{"milliseconds", args, stdin, exitFailure, []string{
		"headers: ok: …", "timestamp: too new: …", "signature: ok: …",
		"hint: the timestamp looks like milliseconds; Svix sends Unix seconds",
		"hint: check the receiving machine's clock",
		"result: not verified: …",
	}})
	args, stdin = flags(signed{good.id, "17e8", good.sig}, compact)
	add(tc{"malformed timestamp", args, stdin, exitFailure, []string{
		"headers: ok: …",
		"timestamp: malformed: 17e8 is not Unix seconds",
		"signature: not checked: no valid timestamp",
		"result: not verified: tlwebhook: invalid signature headers…",
	}})

	// Signatures that match nothing: the entries as the library describes
	// them, then its hints.
	noMatch := func(name, sig, entries string, hints ...string) {
		args, stdin := flags(signed{good.id, good.ts, sig}, compact)
		want := []string{"headers: ok: …", "timestamp: ok: …",
			"signature: mismatch: no entry of " + entries}
		for _, h := range hints {
			want = append(want, "hint: "+h)
		}
		add(tc{name, args, stdin, exitFailure, append(want, "result: not verified: tlwebhook: no matching signature…")})
	}
	given := " matches the body as given (" + strconv.Itoa(len(compact)) + " bytes): "
	noMatch("wrong secret", other.sig, "1"+given+"v1 (44 characters)", "check the key: …")
	noMatch("no v1 entry", "v2,abc v1a,xyz", "2"+given+"v2 (3 characters, malformed), v1a (3 characters, malformed)",
		"the delivery carries v1a (Ed25519) signatures only: verify it with the endpoint's public key (whpk_...)")
	noMatch("entry without a version", "sig-without-version", "1"+given+"an entry without a version",
		"the signature header has no v1 or v1a entry; …")
	noMatch("truncated signature", good.sig[:30], "1"+given+"v1 (27 characters, malformed)",
		"a v1 entry has 27 characters, not 44: truncated or mangled when copied?", "check the key: …")

	// Bodies changed between signing and checking: the library names the
	// re-encoding that verifies.
	mismatch := func(name, signedBody, givenBody, reencoding string) {
		args, stdin := flags(svixSign(t, secret, id, ts, signedBody), givenBody)
		add(tc{name, args, stdin, exitFailure, []string{
			"headers: ok: …", "timestamp: ok: …",
			fmt.Sprintf("signature: mismatch: no entry of 1 matches the body as given (%d bytes): v1 (44 characters)", len(givenBody)),
			"signature: the body verifies once " + reencoding,
			"hint: the bytes checked are not the bytes that were signed: …",
			"result: not verified: tlwebhook: no matching signature",
		}})
	}
	mismatch("trailing newline added", compact, compact+"\n", "without its trailing newline")
	mismatch("trailing newline removed", compact+"\n", compact, "with a trailing newline added")
	mismatch("CRLF line endings", fixture, strings.ReplaceAll(fixture, "\n", "\r\n"), "with CRLF line endings changed to LF")
	mismatch("re-serialised pretty", compact, "{\n  \"job_id\": \"parse_1\",\n  \"status\": \"pending\",\n  \"created_at\": \"2023-10-01T12:00:00Z\"\n}", "compacted")
	mismatch("re-serialised compact", fixture, `{"job_id":"parse_XXX","status":"pending","created_at":"2023-10-01T12:00:00Z"}`,
		"indented with four spaces, with a trailing newline")
	mismatch("re-serialised by Python", `{"job_id": "parse_\u00fc\u6587", "emoji": "\ud83d\udcc4", "n": 1.50}`,
		`{"job_id":"parse_ü文","emoji":"📄","n":1.50}`,
		`re-serialised by Python's json.dumps (", " and ": " separators, non-ASCII as \uXXXX)`)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, tt.stdin, noEnv, append([]string{"verify", "-secret", secret, "-at", at}, tt.args...)...)
			assert.Equal(t, tt.wantCode, r.code, r.stdout+r.stderr)
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			require.Len(t, lines, len(tt.want), r.stdout)
			for i, want := range tt.want {
				if prefix, ok := strings.CutSuffix(want, "…"); ok {
					assert.True(t, strings.HasPrefix(lines[i], prefix), "line %d:\n got %q\nwant %q", i, lines[i], want)
				} else {
					assert.Equal(t, want, lines[i])
				}
			}
			assert.NotContains(t, r.stdout, secret)
		})
	}

	t.Run("stale capture checked at its capture time", func(t *testing.T) {
		args, stdin := flags(stale, compact)
		at := time.Unix(ts-3600+10, 0).UTC().Format(time.RFC3339)
		r := runCmd(t, stdin, noEnv, append([]string{"verify", "-secret", secret, "-at", at}, args...)...)
		assert.Equal(t, exitOK, r.code, r.stdout)
		assert.Contains(t, r.stdout, "timestamp: ok: signed 10s ago (2023-11-14T21:13:20Z)")
	})

	t.Run("default time is now", func(t *testing.T) {
		now := svixSign(t, secret, id, time.Now().Unix(), compact)
		args, stdin := flags(now, compact)
		r := runCmd(t, stdin, noEnv, append([]string{"verify", "-secret", secret}, args...)...)
		assert.Equal(t, exitOK, r.code, r.stdout)
		args, stdin = flags(good, compact)
		r = runCmd(t, stdin, noEnv, append([]string{"verify", "-secret", secret}, args...)...)
		assert.Equal(t, exitFailure, r.code, r.stdout)
		assert.Contains(t, r.stdout, "timestamp: too old: ")
	})
}
