package tlwebhook_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tl "github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/internal/testutil"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// floodHeader is what an attacker without the secret can send: a fresh
// timestamp and a well-formed, wrong v1 entry.
func floodHeader() http.Header {
	return http.Header{
		"Svix-Id":        {"msg_flood"},
		"Svix-Timestamp": {strconv.FormatInt(time.Now().Unix(), 10)},
		"Svix-Signature": {"v1," + strings.Repeat("A", 43) + "="},
	}
}

// TestBodyMemoryFollowsBytesReceived opens many requests that each declare
// a 1 MiB body and send one byte, and checks that the server's heap grows by
// what arrived, not by what was declared (issue 11, defect 1), over HTTP/1.1
// and HTTP/2.
func TestBodyMemoryFollowsBytesReceived(t *testing.T) {
	const conns = 200
	const declared = 1 << 20
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(proto, func(t *testing.T) {
			baseline := flood(t, proto, conns, declared, func(release <-chan struct{}) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					<-release // holds the request without reading its body
				})
			})
			h, err := tl.NewHandler(tlwebhooktest.NewSecret(), tl.WithLogger(slog.New(slog.DiscardHandler)))
			require.NoError(t, err)
			grown := flood(t, proto, conns, declared, func(<-chan struct{}) http.Handler { return h }) - baseline
			t.Logf("%s: %d requests declaring %d bytes each, one byte sent: the Handler adds %.1f MiB to the heap (the server alone: %.1f MiB)",
				proto, conns, declared, float64(grown)/(1<<20), float64(baseline)/(1<<20))
			assert.Less(t, grown, int64(32<<20), "memory must follow the bytes received")
		})
	}
}

// flood serves h, sends conns requests that declare declared bytes and send
// one, and returns how much the heap grew while they were held open.
func flood(t *testing.T, proto string, conns, declared int, handler func(release <-chan struct{}) http.Handler) int64 {
	t.Helper()
	{
		{
			var entered atomic.Int64
			release := make(chan struct{})
			h := handler(release)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				entered.Add(1)
				h.ServeHTTP(w, r)
			}))
			srv.EnableHTTP2 = proto == "HTTP/2"
			if srv.EnableHTTP2 {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			before := heapInUse()

			// The client runs in another process, so that the heap measured
			// is the server's alone.
			client := exec.Command(os.Args[0], "-test.run=^TestFloodClient$")
			client.Env = append(os.Environ(), "TLWEBHOOK_FLOOD_URL="+srv.URL, "TLWEBHOOK_FLOOD_PROTO="+proto,
				"TLWEBHOOK_FLOOD_N="+strconv.Itoa(conns), "TLWEBHOOK_FLOOD_DECLARED="+strconv.Itoa(declared))
			stdin, err := client.StdinPipe()
			require.NoError(t, err)
			client.Stderr = os.Stderr
			require.NoError(t, client.Start())
			defer func() {
				stdin.Close()
				_ = client.Wait()
			}()
			require.Eventually(t, func() bool { return entered.Load() == int64(conns) }, 10*time.Second, 10*time.Millisecond)
			time.Sleep(100 * time.Millisecond) // let every handler block in its read
			grown := int64(heapInUse()) - int64(before)
			close(release)
			srv.CloseClientConnections()
			return grown
		}
	}
}

// TestFloodClient is the client of TestBodyMemoryFollowsBytesReceived,
// run in a process of its own: it opens the requests and holds them until
// its standard input closes.
func TestFloodClient(t *testing.T) {
	url := os.Getenv("TLWEBHOOK_FLOOD_URL")
	if url == "" {
		t.Skip("run by TestBodyMemoryFollowsBytesReceived")
	}
	n, _ := strconv.Atoi(os.Getenv("TLWEBHOOK_FLOOD_N"))
	declared, _ := strconv.Atoi(os.Getenv("TLWEBHOOK_FLOOD_DECLARED"))
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	if os.Getenv("TLWEBHOOK_FLOOD_PROTO") == "HTTP/1.1" {
		addr := strings.TrimPrefix(url, "http://")
		for range n {
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			var b bytes.Buffer
			fmt.Fprintf(&b, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n", declared)
			require.NoError(t, floodHeader().Write(&b))
			b.WriteString("\r\n{")
			_, err = c.Write(b.Bytes())
			require.NoError(t, err)
		}
		<-done
		return
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true} // the test server's own certificate
	client := &http.Client{Transport: tr}
	for range n {
		pr, pw := io.Pipe()
		go func() {
			req, _ := http.NewRequest(http.MethodPost, url, pr)
			req.ContentLength = int64(declared)
			req.Header = floodHeader()
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		go func() {
			_, _ = pw.Write([]byte("{"))
			<-done
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}()
	}
	<-done
}

// TestMaxBodyBytesExtremes checks that the largest limits still accept
// deliveries (issue 11, defect 4: MaxInt64 wrapped limit+1).
func TestMaxBodyBytesExtremes(t *testing.T) {
	for _, limit := range []int64{math.MaxInt64, math.MaxInt64 - 1, 1 << 40} {
		t.Run(strconv.FormatInt(limit, 10), func(t *testing.T) {
			secret := tlwebhooktest.NewSecret()
			h := quietHandler(t, secret, tl.WithMaxBodyBytes(limit))
			ran := false
			h.OnJobCompleted(func(context.Context, *tl.JobCompleted) error { ran = true; return nil })
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, tlwebhooktest.NewRequest(secret, "/", tlwebhooktest.Sample(tl.EventTypeJobCompleted)))
			assert.Equal(t, http.StatusNoContent, rec.Code)
			assert.True(t, ran)
		})
	}
	_, err := tl.NewVerifier(tlwebhooktest.NewSecret(), tl.WithMaxBodyBytes(0))
	assert.ErrorIs(t, err, tl.ErrInvalidOption)
}

// TestUnauthorizedExplainsItself checks the 401 texts and the log lines of
// the usual mistakes (issue 14, finding 2).
func TestUnauthorizedExplainsItself(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	body := tlwebhooktest.Sample(tl.EventTypeSandboxFailed) // indented JSON, as Tensorlake's examples
	signer, err := tlwebhooktest.NewSigner(secret)
	require.NoError(t, err)

	var logs testutil.SyncBuffer
	h, err := tl.NewHandler(secret, tl.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	require.NoError(t, err)

	serve := func(req *http.Request) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	newReq := func(b []byte, hdr http.Header) *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(b))
		for k, v := range hdr {
			req.Header[k] = v
		}
		return req
	}

	t.Run("missing headers", func(t *testing.T) {
		code, text := serve(newReq(body, nil))
		assert.Equal(t, http.StatusUnauthorized, code)
		assert.Equal(t, "missing webhook signature headers", text)
	})
	t.Run("stale", func(t *testing.T) {
		code, text := serve(newReq(body, signer.HeaderFor("msg_old", time.Now().Add(-time.Hour), body)))
		assert.Equal(t, http.StatusUnauthorized, code)
		assert.Equal(t, "webhook timestamp too old", text)
	})
	t.Run("body consumed by a middleware", func(t *testing.T) {
		req := newReq(body, signer.Header(body))
		_, _ = io.ReadAll(req.Body) // what a logging middleware does
		code, text := serve(req)
		assert.Equal(t, http.StatusUnauthorized, code)
		assert.Equal(t, "invalid webhook signature", text)
		assert.Contains(t, logs.String(), "did a middleware read it before the handler?")
	})
	t.Run("body re-encoded by a middleware", func(t *testing.T) {
		var compact bytes.Buffer
		require.NoError(t, compactJSON(&compact, body))
		require.NotEqual(t, body, compact.Bytes())
		// A fresh Verifier diagnoses its first failure at once.
		code, _ := serve(newReq(compact.Bytes(), signer.Header(body)))
		assert.Equal(t, http.StatusUnauthorized, code)
		assert.Contains(t, logs.String(), "a middleware likely re-encoded it")
	})
	t.Run("a key that verifies nothing is reported once", func(t *testing.T) {
		// A fresh handler: the re-encoded body above proved the key right.
		var logs2 testutil.SyncBuffer
		h2, err := tl.NewHandler(secret, tl.WithLogger(slog.New(slog.NewTextHandler(&logs2, &slog.HandlerOptions{Level: slog.LevelWarn}))))
		require.NoError(t, err)
		other, err := tlwebhooktest.NewSigner(tlwebhooktest.NewSecret())
		require.NoError(t, err)
		for range 10 {
			h2.ServeHTTP(httptest.NewRecorder(), newReq(body, other.Header(body)))
		}
		assert.Equal(t, 1, strings.Count(logs2.String(), "no delivery has verified since start-up"), logs2.String())
		// Once a delivery verifies, the warning is not given.
		var logs3 testutil.SyncBuffer
		h3, err := tl.NewHandler(secret, tl.WithLogger(slog.New(slog.NewTextHandler(&logs3, &slog.HandlerOptions{Level: slog.LevelWarn}))))
		require.NoError(t, err)
		h3.ServeHTTP(httptest.NewRecorder(), newReq(body, signer.Header(body)))
		for range 10 {
			h3.ServeHTTP(httptest.NewRecorder(), newReq(body, other.Header(body)))
		}
		assert.NotContains(t, logs3.String(), "no delivery has verified since start-up")
	})
	t.Run("no secret or signature in the logs", func(t *testing.T) {
		assert.NotContains(t, logs.String(), strings.TrimPrefix(secret, "whsec_"))
		assert.NotContains(t, logs.String(), strings.TrimPrefix(signer.Header(body).Get("svix-signature"), "v1,")[:20])
	})
}

// TestHandlerOnlyOptionsDoNotCompileForVerifier builds a program that passes
// a Handler-only option to NewVerifier and checks the compiler refuses it.
func TestHandlerOnlyOptionsDoNotCompileForVerifier(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	dir := t.TempDir()
	src := `package main

import tl "github.com/tlwebhook/tlwebhook"

func main() {
	_, _ = tl.NewHandler("s", tl.WithTolerance(1), tl.WithCallbackTimeout(1)) // compiles: both are HandlerOptions
	_, _ = tl.NewVerifier("s", tl.WithCallbackTimeout(1))                      // must not compile
}
`
	pkg := filepath.Join("internal", "compilecheck_"+strconv.Itoa(os.Getpid()))
	require.NoError(t, os.MkdirAll(pkg, 0o755))
	defer os.RemoveAll(pkg)
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "main.go"), []byte(src), 0o644))
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "out"), "./"+filepath.ToSlash(pkg))
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "a Handler-only option given to NewVerifier must not compile")
	sc := bufio.NewScanner(bytes.NewReader(out))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	require.Len(t, lines, 2, "exactly one compile error:\n%s", out)
	assert.Contains(t, lines[1], "main.go:7:")
	assert.Contains(t, lines[1], "WithCallbackTimeout")
}

func compactJSON(dst *bytes.Buffer, src []byte) error {
	var out []byte
	inString, escaped := false, false
	for _, c := range src {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\n' || c == '\t' || c == '\r'):
			continue
		}
		out = append(out, c)
	}
	_, err := dst.Write(out)
	return err
}
