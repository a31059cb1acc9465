package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// Tests of asymmetric keys in the CLI (issue 13), listen -save (issue 14
// part 3) and send -event all (issue 14 part 6).

func TestSecretAsymmetric(t *testing.T) {
	r := runCmd(t, "", noEnv, "secret", "-asymmetric")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 2, r.stdout)
	sk, pk := lines[0], lines[1]
	require.True(t, strings.HasPrefix(sk, "whsk_"), sk)
	require.True(t, strings.HasPrefix(pk, "whpk_"), pk)
	assert.Contains(t, r.stderr, "line 1: signing key")

	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sk, "whsk_"))
	require.NoError(t, err)
	require.Len(t, raw, ed25519.PrivateKeySize)
	assert.Equal(t, "whpk_"+base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(raw[:32]).Public().(ed25519.PublicKey)), pk)
	_, err = tlwebhook.NewVerifier(pk)
	assert.NoError(t, err)

	again := runCmd(t, "", noEnv, "secret", "-asymmetric")
	assert.NotEqual(t, r.stdout, again.stdout, "fresh keys each time")
}

// openSSLVector is the first vector of ../../testdata/ed25519/vectors.json,
// made by OpenSSL.
func openSSLVector(t *testing.T) (sk, pk, id string, ts int64, body []byte, sig string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ed25519", "vectors.json"))
	require.NoError(t, err)
	var file struct {
		Vectors []struct {
			SigningKey string `json:"signing_key"`
			PublicKey  string `json:"public_key"`
			ID         string `json:"id"`
			Timestamp  int64  `json:"timestamp"`
			BodyBase64 string `json:"body_base64"`
			Signature  string `json:"signature"`
		} `json:"vectors"`
	}
	require.NoError(t, json.Unmarshal(data, &file))
	require.NotEmpty(t, file.Vectors)
	v := file.Vectors[0]
	body, err = base64.StdEncoding.DecodeString(v.BodyBase64)
	require.NoError(t, err)
	return v.SigningKey, v.PublicKey, v.ID, v.Timestamp, body, v.Signature
}

func TestSignVerifyEd25519(t *testing.T) {
	sk, pk, id, ts, body, wantSig := openSSLVector(t)
	tsStr := strconv.FormatInt(ts, 10)
	at := strconv.FormatInt(ts+5, 10)

	t.Run("sign makes OpenSSL's signature", func(t *testing.T) {
		r := runCmd(t, string(body), noEnv, "sign", "-secret", sk, "-id", id, "-timestamp", tsStr)
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.Equal(t, "svix-id: "+id+"\nsvix-timestamp: "+tsStr+"\nsvix-signature: "+wantSig+"\n", r.stdout)
		assert.NotContains(t, r.stdout+r.stderr, strings.TrimPrefix(sk, "whsk_"))
	})

	verify := func(key, sig string, body []byte) result {
		return runCmd(t, string(body), noEnv, "verify", "-secret", key, "-at", at,
			"-id", id, "-timestamp", tsStr, "-signature", sig, "-body", "-")
	}
	secret := tlwebhooktest.NewSecret()
	v1 := signer(secret).Sign(id, time.Unix(ts, 0), body)
	_, otherPub := tlwebhooktest.NewKeyPair()
	var indented bytes.Buffer
	require.NoError(t, json.Indent(&indented, body, "", "  "))
	tests := []struct {
		name, key, sig string
		body           []byte
		code           int
		want           []string
	}{
		{"public key verifies", pk, wantSig, body, exitOK, []string{
			"signature: ok: entry 1 of 1 (v1a) matches\n", "result: verified delivery=" + id + "\n"}},
		{"v1 entry first", pk, v1 + " " + wantSig, body, exitOK, []string{"signature: ok: entry 2 of 2 (v1a) matches\n"}},
		{"re-encoded body", pk, wantSig, indented.Bytes(), exitFailure, []string{
			"signature: mismatch: no entry of 1 matches the body as given (" + strconv.Itoa(indented.Len()) + " bytes): v1a (88 characters)\n",
			"signature: the body verifies once compacted\n",
			"hint: the bytes checked are not the bytes that were signed"}},
		{"another public key", otherPub, wantSig, body, exitFailure, []string{
			"signature: mismatch: no entry of 1 ", "hint: check the key: "}},
		{"truncated v1a entry", pk, wantSig[:60], body, exitFailure, []string{
			"v1a (56 characters, malformed)\n", "hint: a v1a entry has 56 characters, not 88: truncated or mangled when copied?\n"}},
		{"HMAC secret for a v1a delivery", secret, wantSig, body, exitFailure, []string{
			"hint: the delivery carries v1a (Ed25519) signatures only: verify it with the endpoint's public key (whpk_...)\n"}},
		{"public key for a v1 delivery", pk, v1, body, exitFailure, []string{
			"hint: the delivery carries v1 (HMAC) signatures only: verify it with the endpoint's signing secret (whsec_...)\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := verify(tt.key, tt.sig, tt.body)
			assert.Equal(t, tt.code, r.code, r.stdout+r.stderr)
			for _, w := range tt.want {
				assert.Contains(t, r.stdout, w)
			}
		})
	}

	usage := []struct {
		name string
		args []string
		want string
	}{
		{"verify with the signing key", []string{"verify", "-secret", sk, "-body", "-"},
			"a whsk_ key is the sender's private signing key; give the receiver the public key (whpk_)"},
		{"listen with the signing key", []string{"listen", "-secret", sk}, "give the receiver the public key (whpk_)"},
		{"sign with the public key", []string{"sign", "-secret", pk}, "a whpk_ public key verifies but cannot sign; sign with the whsk_ signing key"},
		{"send with the public key", []string{"send", "-secret", pk, "-event", "all"}, "a whpk_ public key verifies but cannot sign"},
		{"sign with a 32-byte signing key", []string{"sign", "-secret", "whsk_" + base64.StdEncoding.EncodeToString(make([]byte, 32))}, "signing key decodes to 32 bytes, want 64"},
		{"listen with a 31-byte public key", []string{"listen", "-secret", "whpk_" + base64.StdEncoding.EncodeToString(make([]byte, 31))}, "public key decodes to 31 bytes, want 32"},
	}
	for _, tt := range usage {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, "", noEnv, tt.args...)
			assert.Equal(t, exitUsage, r.code, r.stdout+r.stderr)
			assert.Contains(t, r.stderr, tt.want)
			assert.NotContains(t, r.stderr, strings.TrimPrefix(sk, "whsk_"), "a usage error prints the signing key")
		})
	}
}

func TestSendIntoListenEd25519(t *testing.T) {
	sk, pk := tlwebhooktest.NewKeyPair()
	url, out, _ := startListen(t, "-secret", pk)
	r := runCmd(t, "", noEnv, "send", "-url", url, "-secret", sk, "-event", "sandbox.failed")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	waitFor(t, out, `(?m)^event tensorlake\.sandbox\.failed delivery=msg_\S+ callback=OnSandboxEvent `)

	otherSK, _ := tlwebhooktest.NewKeyPair()
	r = runCmd(t, "", noEnv, "send", "-url", url, "-secret", otherSK, "-event", "sandbox.failed")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stdout, "status=401")
	waitFor(t, out, `(?m)^rejected status=401 delivery=msg_\S+ reason="tlwebhook: no matching signature`)
}

// TestSendEventAll checks that "-event all" sends one delivery of every
// event type, and that -n still cycles through them.
func TestSendEventAll(t *testing.T) {
	for _, kind := range []string{"HMAC", "Ed25519"} {
		t.Run(kind, func(t *testing.T) {
			signKey := tlwebhooktest.NewSecret()
			verifyKey := signKey
			if kind == "Ed25519" {
				signKey, verifyKey = tlwebhooktest.NewKeyPair()
			}
			h, err := tlwebhook.NewHandler(verifyKey, quietLogger(t))
			require.NoError(t, err)
			var mu sync.Mutex
			seen := map[tlwebhook.EventType]int{}
			onEvery(h, func(_ context.Context, _ string, ev tlwebhook.Event) error {
				mu.Lock()
				defer mu.Unlock()
				seen[ev.Type()]++
				return nil
			})
			srv := httptest.NewServer(h)
			defer srv.Close()

			r := runCmd(t, "", noEnv, "send", "-url", srv.URL, "-secret", signKey, "-event", "all", "-c", "3")
			require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
			types := tlwebhook.EventTypes()
			assert.Len(t, regexp.MustCompile(`(?m)^sent \d+/`+strconv.Itoa(len(types))+` status=204 `).FindAllString(r.stdout, -1), len(types), r.stdout)
			assert.Regexp(t, `(?m)^summary requests=`+strconv.Itoa(len(types))+` ok=`+strconv.Itoa(len(types))+` failed=0 `, r.stdout)
			mu.Lock()
			defer mu.Unlock()
			for _, typ := range types {
				assert.Equal(t, 1, seen[typ], "deliveries of %s", typ)
			}
			assert.Len(t, seen, len(types))
		})
	}

	t.Run("-n cycles", func(t *testing.T) {
		secret := tlwebhooktest.NewSecret()
		h, err := tlwebhook.NewHandler(secret, quietLogger(t))
		require.NoError(t, err)
		srv := httptest.NewServer(h)
		defer srv.Close()
		r := runCmd(t, "", noEnv, "send", "-url", srv.URL, "-secret", secret, "-event", "all", "-n", "2")
		require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
		assert.Regexp(t, `(?m)^summary requests=2 ok=2 failed=0 `, r.stdout)
	})
}

// savedFiles waits for n files in dir and returns their paths, sorted.
func savedFiles(t *testing.T, dir string, n int) []string {
	t.Helper()
	var files []string
	require.Eventually(t, func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "*.http"))
		return len(files) >= n
	}, 10*time.Second, 5*time.Millisecond)
	return files
}

// TestListenSave captures deliveries with listen -save and explains them
// with verify -request: a saved delivery verifies, a tampered one is
// diagnosed.
func TestListenSave(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	dir := filepath.Join(t.TempDir(), "captured") // created by listen
	url, out, stop := startListen(t, "-secret", secret, "-save", dir)

	r := runCmd(t, "", noEnv, "send", "-url", url, "-secret", secret, "-event", "job.completed")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	id := regexp.MustCompile(`delivery=(msg_\S+)`).FindStringSubmatch(r.stdout)[1]
	file := waitFor(t, out, `(?m)^saved file=(\S+) delivery=`+regexp.QuoteMeta(id)+`$`)
	waitFor(t, out, `(?m)^event tensorlake\.document_ingestion\.job\.completed delivery=`+regexp.QuoteMeta(id))
	assert.Regexp(t, `^0001-\d{8}T\d{6}Z-`+regexp.QuoteMeta(id)+`\.http$`, filepath.Base(file))
	info, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "saved requests hold payloads and signatures")
	dirInfo, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), dirInfo.Mode().Perm())

	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	require.True(t, ok, "no blank line:\n%s", raw)
	assert.Equal(t, tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted), body, "the body is saved unchanged")
	headLines := strings.Split(string(head), "\r\n")
	assert.Equal(t, "POST /webhooks/tensorlake HTTP/1.1", headLines[0])
	assert.True(t, strings.HasPrefix(headLines[1], "Host: 127.0.0.1:"), headLines[1])
	assert.Equal(t, "Content-Length: "+strconv.Itoa(len(body)), headLines[len(headLines)-1])
	assert.Contains(t, headLines, "Svix-Id: "+id)

	verifyFile := func(t *testing.T, path string) result {
		t.Helper()
		return runCmd(t, "", noEnv, "verify", "-secret", secret, "-request", path)
	}
	t.Run("saved delivery verifies", func(t *testing.T) {
		r := verifyFile(t, file)
		assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
		assert.Equal(t, []string{
			"headers: ok: svix-id, svix-timestamp, svix-signature",
		}, strings.Split(r.stdout, "\n")[:1], "no note about framing: the file is well-formed")
		assert.Contains(t, r.stdout, "signature: ok: entry 1 of 1 (v1) matches\n")
		assert.True(t, strings.HasSuffix(r.stdout, "result: verified delivery="+id+"\n"), r.stdout)
	})

	withBody := func(b []byte) []byte {
		h := regexp.MustCompile(`Content-Length: \d+`).ReplaceAllString(string(head), "Content-Length: "+strconv.Itoa(len(b)))
		return append([]byte(h+"\r\n\r\n"), b...)
	}
	tampered := []struct {
		name string
		data []byte
		want []string
	}{
		{"a digit of the body changed", func() []byte {
			b := bytes.Replace(body, []byte(`"pages_parsed": 10`), []byte(`"pages_parsed": 11`), 1)
			require.NotEqual(t, body, b)
			return withBody(b)
		}(), []string{
			"signature: mismatch: no entry of 1 matches the body as given",
			"hint: check the key: ",
			"result: not verified: tlwebhook: no matching signature",
		}},
		{"a newline appended to the body", withBody(append(bytes.Clone(body), '\n')), []string{
			"signature: the body verifies once without its trailing newline\n",
			"hint: the bytes checked are not the bytes that were signed",
		}},
		{"line endings changed to CRLF", withBody(bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))), []string{
			"signature: the body verifies once with CRLF line endings changed to LF\n",
			"hint: the bytes checked are not the bytes that were signed",
		}},
		{"body consumed before the capture", withBody(nil), []string{
			"signature: mismatch: no entry of 1 matches the body as given (0 bytes): v1 (44 characters)\n",
		}},
		{"signature header removed", regexp.MustCompile(`(?m)^Svix-Signature: .*\r\n`).ReplaceAll(raw, nil), []string{
			"headers: missing svix-signature",
			"result: not verified: tlwebhook: missing signature headers",
		}},
		{"signature header renamed by a proxy", bytes.Replace(raw, []byte("Svix-Signature:"), []byte("X-Svix-Signature:"), 1), []string{
			"hint: header X-Svix-Signature is not a signature header name; if it carries one, a proxy renamed it",
		}},
	}
	for _, tt := range tampered {
		t.Run("tampered/"+tt.name, func(t *testing.T) {
			r := verifyFile(t, writeTemp(t, tt.data))
			assert.Equal(t, exitFailure, r.code, r.stdout+r.stderr)
			for _, w := range tt.want {
				assert.Contains(t, r.stdout, w)
			}
		})
	}

	t.Run("rejected and stray requests are saved too", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"forged":true}`))
		require.NoError(t, err)
		req.Header.Set("svix-id", "msg_forged/../x")
		req.Header.Set("svix-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
		req.Header.Set("svix-signature", "v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32)))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		forged := waitFor(t, out, `(?m)^saved file=(\S+) delivery=msg_forged/\.\./x$`)
		assert.Equal(t, dir, filepath.Dir(forged), "the id cannot leave the directory")
		assert.Regexp(t, `-msg_forged____x\.http$`, forged)
		r := verifyFile(t, forged)
		assert.Equal(t, exitFailure, r.code)
		assert.Contains(t, r.stdout, "signature: mismatch: ")

		resp, err = http.Get(strings.TrimSuffix(url, "/webhooks/tensorlake") + "/elsewhere?x=1")
		require.NoError(t, err)
		resp.Body.Close()
		stray := waitFor(t, out, `(?m)^saved file=(\S+-no-id\.http)$`)
		data, err := os.ReadFile(stray)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(string(data), "GET /elsewhere?x=1 HTTP/1.1\r\n"), string(data))
	})

	t.Run("chunked body is saved decoded", func(t *testing.T) {
		body := tlwebhooktest.Sample(tlwebhook.EventTypeRequestFailed)
		s := signer(secret)
		h := s.Header(body)
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < len(body); i += 100 {
				_, _ = pw.Write(body[i:min(i+100, len(body))])
			}
			pw.Close()
		}()
		req, err := http.NewRequest(http.MethodPost, url, pr)
		require.NoError(t, err)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusNoContent, resp.StatusCode)
		saved := waitFor(t, out, `(?m)^saved file=(\S+) delivery=`+regexp.QuoteMeta(h.Get("svix-id"))+`$`)
		r := verifyFile(t, saved)
		assert.Equal(t, exitOK, r.code, r.stdout)
		data, err := os.ReadFile(saved)
		require.NoError(t, err)
		assert.Contains(t, string(data), "\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
		assert.NotContains(t, string(data), "Transfer-Encoding")
	})

	assert.Equal(t, exitOK, stop())
	assert.Len(t, savedFiles(t, dir, 4), 4, "one file per request")
	assert.NotContains(t, out.String(), secret)
}

// TestListenSaveEd25519 captures a v1a delivery and verifies the file with
// the public key.
func TestListenSaveEd25519(t *testing.T) {
	sk, pk := tlwebhooktest.NewKeyPair()
	dir := t.TempDir()
	url, out, _ := startListen(t, "-secret", pk, "-save", dir)
	r := runCmd(t, "", noEnv, "send", "-url", url, "-secret", sk, "-event", "application.created")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	file := waitFor(t, out, `(?m)^saved file=(\S+) delivery=msg_\S+$`)

	r = runCmd(t, "", noEnv, "verify", "-secret", pk, "-request", file)
	assert.Equal(t, exitOK, r.code, r.stdout)
	assert.Contains(t, r.stdout, "signature: ok: entry 1 of 1 (v1a) matches\n")

	r = runCmd(t, "", noEnv, "verify", "-secret", tlwebhooktest.NewSecret(), "-request", file)
	assert.Equal(t, exitFailure, r.code, r.stdout)
	assert.Contains(t, r.stdout, "hint: the delivery carries v1a (Ed25519) signatures only: verify it with the endpoint's public key (whpk_...)\n")
}

func TestFileSafe(t *testing.T) {
	tests := map[string]string{
		"":                       "no-id",
		"msg_2LhABC":             "msg_2LhABC",
		"../../etc/passwd":       "______etc_passwd",
		"a b\x00c":               "a_b_c",
		strings.Repeat("x", 100): strings.Repeat("x", 64),
	}
	for in, want := range tests {
		assert.Equal(t, want, fileSafe(in), "%q", in)
	}
}
