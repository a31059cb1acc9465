package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
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
	"github.com/tlwebhook/tlwebhook/internal/testutil"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

func noEnv(string) string { return "" }

// result is the outcome of one in-process command run.
type result struct {
	code           int
	stdout, stderr string
}

// runCmd runs the command line args in-process with the given stdin and
// environment.
func runCmd(t *testing.T, stdin string, getenv func(string) string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runContext(t.Context(), args, &env{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr, getenv: getenv})
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// wantCallback is the callback each event type must reach.
func wantCallback(t tlwebhook.EventType) string { return testutil.WantCallback(string(t)) }

func TestDemo(t *testing.T) {
	r := runCmd(t, "", noEnv, "demo")
	require.Equal(t, exitOK, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	types := tlwebhook.EventTypes()
	require.Len(t, lines, 1+len(types)+2+1, r.stdout)

	total := strconv.Itoa(len(types) + 2) // every type, a forged and a stale delivery
	assert.Regexp(t, `^demo: receiver on http://127\.0\.0\.1:\d+/webhooks/tensorlake with a fresh secret, `+total+` deliveries$`, lines[0])
	for i, typ := range types {
		assert.Regexp(t, `^ok +`+regexp.QuoteMeta(string(typ))+` +status=204 callback=`+wantCallback(typ)+` `, lines[1+i])
	}
	assert.Contains(t, r.stdout, "callback=OnJobCompleted job_id=parse_XXX status=successful pages_parsed=10\n")
	assert.Contains(t, r.stdout, "failure_reason=function_timeout\n")
	assert.Regexp(t, `^ok +forged +status=401 callback=none reason="tlwebhook: no matching signature"$`, lines[len(lines)-3])
	assert.Regexp(t, `^ok +stale +status=401 callback=none reason="tlwebhook: timestamp too old: `, lines[len(lines)-2])
	assert.Equal(t, "PASS "+total+" of "+total+" deliveries as expected", lines[len(lines)-1])
	assert.Empty(t, r.stderr)
}

func TestUsageErrors(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"no command", nil, "usage: tlwebhook <command>"},
		{"unknown command", []string{"bogus"}, `unknown command "bogus"`},
		{"unknown flag", []string{"demo", "-bogus"}, "flag provided but not defined: -bogus"},
		{"positional argument", []string{"demo", "extra"}, `unexpected argument "extra"`},
		{"secret takes no arguments", []string{"secret", "x"}, `unexpected argument "x"`},
		{"listen without secret", []string{"listen"}, "no secret: pass -secret or set TENSORLAKE_WEBHOOK_SECRET"},
		{"listen with short secret", []string{"listen", "-secret", "whsec_c2hvcnQ="}, "invalid secret"},
		{"listen with relative path", []string{"listen", "-secret", secret, "-path", "hooks"}, `-path "hooks" must start with /`},
		{"send without payload", []string{"send", "-secret", secret}, "give exactly one of -event, -file and -request"},
		{"send with event and file", []string{"send", "-secret", secret, "-event", "all", "-file", "x.json"}, "give exactly one of -event, -file and -request"},
		{"send unknown event", []string{"send", "-secret", secret, "-event", "nope"}, `no sample payload for event type "nope"`},
		{"send ambiguous event", []string{"send", "-secret", secret, "-event", "created"}, `event type "created" is ambiguous`},
		{"send zero requests", []string{"send", "-secret", secret, "-event", "all", "-n", "0"}, "-n and -c must be at least 1"},
		{"send bad URL", []string{"send", "-secret", secret, "-event", "all", "-url", "ftp://x/y"}, "not an absolute http or https URL"},
		{"send bad number", []string{"send", "-secret", secret, "-event", "all", "-n", "many"}, `invalid value "many" for flag -n`},
		{"sign without secret", []string{"sign"}, "no secret"},
		{"verify without input", []string{"verify", "-secret", secret}, "give -request FILE, or -body FILE"},
		{"verify with both inputs", []string{"verify", "-secret", secret, "-request", "r", "-body", "b"}, "not both"},
		{"verify bad -at", []string{"verify", "-secret", secret, "-body", "b", "-at", "yesterday"}, "neither Unix seconds nor RFC 3339"},
		{"verify without secret", []string{"verify", "-body", "b"}, "no secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, "", noEnv, tt.args...)
			assert.Equal(t, exitUsage, r.code)
			assert.Contains(t, r.stderr, tt.wantStderr)
			assert.Empty(t, r.stdout)
			assert.NotContains(t, r.stderr, secret, "a usage error prints the secret")
		})
	}
}

func TestFailures(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"verify missing request file", []string{"verify", "-secret", secret, "-request", "/nonexistent/req.http"}, "no such file"},
		{"verify request file not HTTP", []string{"verify", "-secret", secret, "-request", "-"}, "not an HTTP request"},
		{"send missing payload file", []string{"send", "-secret", secret, "-file", "/nonexistent/p.json"}, "no such file"},
		{"listen on a bad address", []string{"listen", "-secret", secret, "-addr", "127.0.0.1:99999"}, "invalid port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, "not a request\n\n", noEnv, tt.args...)
			assert.Equal(t, exitFailure, r.code, r.stdout)
			assert.Contains(t, r.stderr, tt.wantStderr)
		})
	}
}

func TestHelp(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {"help", c.name}} {
				r := runCmd(t, "", noEnv, args...)
				assert.Equal(t, exitOK, r.code, args)
				assert.True(t, strings.HasPrefix(r.stdout, "usage: tlwebhook "+c.name), r.stdout)
				assert.Empty(t, r.stderr)
			}
		})
	}
	t.Run("top level", func(t *testing.T) {
		for _, args := range [][]string{{"help"}, {"-h"}} {
			r := runCmd(t, "", noEnv, args...)
			assert.Equal(t, exitOK, r.code)
			for _, c := range commands {
				assert.Regexp(t, `(?m)^  `+c.name+` +\S`, r.stdout)
			}
		}
	})
}

func TestSecretCommand(t *testing.T) {
	r := runCmd(t, "", noEnv, "secret")
	require.Equal(t, exitOK, r.code)
	secret := strings.TrimSuffix(r.stdout, "\n")
	_, err := tlwebhook.NewVerifier(secret)
	require.NoError(t, err)
	assert.NotEqual(t, secret, strings.TrimSuffix(runCmd(t, "", noEnv, "secret").stdout, "\n"))
}

func TestParseEventType(t *testing.T) {
	tests := []struct {
		in      string
		want    tlwebhook.EventType
		wantErr string
	}{
		{in: "tensorlake.sandbox.failed", want: tlwebhook.EventTypeSandboxFailed},
		{in: "sandbox.failed", want: tlwebhook.EventTypeSandboxFailed},
		{in: "job.completed", want: tlwebhook.EventTypeJobCompleted},
		{in: "request.failed", want: tlwebhook.EventTypeRequestFailed},
		{in: "application.created", want: tlwebhook.EventTypeApplicationCreated},
		{in: "workflow.completed", want: tlwebhook.EventTypeWorkflowCompleted},
		{in: "failed", wantErr: "ambiguous"},
		{in: "sandbox", wantErr: "no sample payload for event type"},
		{in: "", wantErr: "no sample payload for event type"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseEventType(tt.in)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestQuoteIfNeeded(t *testing.T) {
	tests := map[string]string{
		"parse_XXX":       "parse_XXX",
		"":                `""`,
		"two words":       `"two words"`,
		`say "hi"`:        `"say \"hi\""`,
		"a=b":             `"a=b"`,
		"line\nbreak":     `"line\nbreak"`,
		"parse_ünïcødé":   "parse_ünïcødé",
		"tab\tseparated":  `"tab\tseparated"`,
		"back\\slash":     `"back\\slash"`,
		"evt_0-1:2/3.4_5": "evt_0-1:2/3.4_5",
	}
	for in, want := range tests {
		assert.Equal(t, want, quoteIfNeeded(in), in)
	}
}

// waitFor polls buf until re matches and returns the first submatch.
func waitFor(t *testing.T, buf *testutil.SyncBuffer, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	require.Eventually(t, func() bool {
		m = rx.FindStringSubmatch(buf.String())
		return m != nil
	}, 10*time.Second, 5*time.Millisecond, "no %q in output:\n%s", re, buf)
	if len(m) > 1 {
		return m[1]
	}
	return m[0]
}

// startListen runs listen in-process on a free loopback port and returns
// its URL, its output and a function that stops it and returns its exit
// status.
func startListen(t *testing.T, args ...string) (url string, out *testutil.SyncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &testutil.SyncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, append([]string{"listen", "-addr", "127.0.0.1:0"}, args...),
			&env{stdin: strings.NewReader(""), stdout: out, stderr: out, getenv: noEnv})
	}()
	url = waitFor(t, out, `listening on (http://127\.0\.0\.1:\d+/\S*)\n`)
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(10 * time.Second):
				t.Error("listen did not stop after its context was cancelled")
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return url, out, stop
}

// writeTemp writes data to a file of its own in a temporary directory and
// returns its path.
func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "request.http")
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

var _ io.Writer = (*testutil.SyncBuffer)(nil)

// quietLogger sends a test Handler's log records to the test's log, shown
// only when the test fails.
func quietLogger(t testing.TB) tlwebhook.HandlerOption {
	return tlwebhook.WithLogger(slog.New(slog.NewTextHandler(testLogWriter{t}, nil)))
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
