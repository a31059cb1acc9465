package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// driftedSample is the sandbox.failed sample with each old string replaced.
func driftedSample(t *testing.T, oldNew ...string) string {
	t.Helper()
	s := string(tlwebhooktest.Sample(tlwebhook.EventTypeSandboxFailed))
	for i := 0; i < len(oldNew); i += 2 {
		require.Contains(t, s, oldNew[i])
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	return s
}

// capture renders body as a request saved by listen -save.
func capture(body string) string {
	return fmt.Sprintf("POST /webhooks/tensorlake HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nSvix-Id: msg_1\r\nSvix-Signature: v1,x\r\nSvix-Timestamp: 1\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	exact := write("exact.json", string(tlwebhooktest.Sample(tlwebhook.EventTypeSandboxFailed)))
	additive := write("additive.json", driftedSample(t, `"gpu_model": null`, `"gpu_model": null, "gpu_memory_mb": 1`, `"out_of_memory"`, `"cosmic rays"`))
	breaking := write("breaking.http", capture(driftedSample(t, `"cpus": 2`, `"cpus": "2"`)))
	invalid := write("invalid.json", `{"a":1,"a":2}`)

	t.Run("exact and additive", func(t *testing.T) {
		r := runCmd(t, "", noEnv, "check", exact, additive)
		require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
		assert.Equal(t, "ok file="+exact+" type=tensorlake.sandbox.failed\n"+
			"drift file="+additive+" type=tensorlake.sandbox.failed pointer=/data/sandbox/outcome_reason kind=new_value breaking=false value=\"cosmic rays\"\n"+
			"drift file="+additive+" type=tensorlake.sandbox.failed pointer=/data/sandbox/resources/gpu_memory_mb kind=new_member breaking=false\n"+
			"summary files=2 drift=2 breaking=0 invalid=0\n", r.stdout)
	})
	t.Run("breaking drift in a capture", func(t *testing.T) {
		r := runCmd(t, "", noEnv, "check", exact, breaking)
		assert.Equal(t, exitFailure, r.code)
		assert.Contains(t, r.stdout, "drift file="+breaking+" type=tensorlake.sandbox.failed pointer=/data/sandbox/resources/cpus kind=wrong_kind breaking=true\n")
		assert.Contains(t, r.stdout, "summary files=2 drift=1 breaking=1 invalid=0\n")
	})
	t.Run("stdin and invalid", func(t *testing.T) {
		r := runCmd(t, `{"status":"pending","job_id":"parse_1","created_at":"2023-10-01T12:00:00Z"}`, noEnv, "check", "-", invalid, filepath.Join(dir, "missing"))
		assert.Equal(t, exitFailure, r.code)
		assert.Contains(t, r.stdout, "ok file=- type=tensorlake.document_ingestion.job.created\n")
		assert.Regexp(t, `(?m)^invalid file=\S+invalid.json reason="tlwebhook: invalid payload: duplicate member name at offset \d+"$`, r.stdout)
		assert.Regexp(t, `(?m)^invalid file=\S+missing reason=.*no such file`, r.stdout)
		assert.Contains(t, r.stdout, "summary files=3 drift=0 breaking=0 invalid=2\n")
	})
	t.Run("usage", func(t *testing.T) {
		r := runCmd(t, "", noEnv, "check")
		assert.Equal(t, exitUsage, r.code)
		assert.Contains(t, runCmd(t, "", noEnv, "-h").stdout, "check ")
	})
}

// TestListenPrintsDrift: listen prints each drift of a verified delivery as
// it arrives, from the Handler's Observation.
func TestListenPrintsDrift(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	url, out, stop := startListen(t, "-secret", secret)
	body := driftedSample(t, `"cpus": 2`, `"cpus": "2"`, `"gpu_model": null`, `"gpu_model": null, "gpu_memory_mb": 1`)
	r := runCmd(t, body, noEnv, "send", "-url", url, "-secret", secret, "-file", "-")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	id := regexp.MustCompile(`delivery=(msg_\S+)`).FindStringSubmatch(r.stdout)
	require.NotNil(t, id, r.stdout)
	waitFor(t, out, `(?m)^event tensorlake\.sandbox\.failed delivery=`+id[1]+` callback=OnUnknown `)
	waitFor(t, out, `(?m)^drift delivery=`+id[1]+` type=tensorlake\.sandbox\.failed pointer=/data/sandbox/resources/cpus kind=wrong_kind breaking=true$`)
	waitFor(t, out, `(?m)^drift delivery=`+id[1]+` type=tensorlake\.sandbox\.failed pointer=/data/sandbox/resources/gpu_memory_mb kind=new_member breaking=false$`)
	assert.Equal(t, exitOK, stop())
}
