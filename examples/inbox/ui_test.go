package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// screenshot is where TestRiverUI saves its screenshot of River UI's job
// list; by default a temporary file. docs/inbox.md shows one:
//
//	go test ./examples/inbox -run TestRiverUI -screenshot ../../docs/inbox-river-ui.png
var screenshot = flag.String("screenshot", "", "save River UI's job list screenshot to this PNG file")

// chromiumPath returns the path of a Chromium or Chrome binary on PATH.
func chromiumPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on PATH (apt-get install chromium)")
}

func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// chromium returns the path of a Chromium or Chrome binary; it skips the
// test when there is none (TestMain says so on go test's output), and
// fails it when CI=true.
func chromium(t *testing.T) string {
	t.Helper()
	p, err := chromiumPath()
	switch {
	case err == nil:
		return p
	case inCI():
		t.Fatalf("%v; CI=true requires it (.ci/run installs the Debian package chromium)", err)
	}
	t.Skipf("the River UI browser test needs Chromium: %v", err)
	return ""
}

// browser starts a headless Chromium of its own, with a fresh profile, that
// sends header on every request, and returns its chromedp context.
func browser(t *testing.T, header http.Header) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	headers := network.Headers{}
	for k := range header {
		headers[k] = header.Get(k)
	}
	// Credentials go in a header sent with every request: in the URL
	// (http://admin:pw@host/) they break River UI's own API calls.
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tgt, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tgt, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: headers})
		return err
	}))
	if err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

// do runs the browser steps, each bounded so that a missing element fails
// the test instead of hanging it.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		text, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Evaluate[string]("document.body.innerText"))
		t.Fatalf("%s: %v; the page shows:\n%s", what, err, text)
	}
}

// pageShows waits until the page's text contains every one of texts.
func pageShows(t *testing.T, ctx context.Context, what string, texts ...string) {
	t.Helper()
	var conds []string
	for _, s := range texts {
		conds = append(conds, "document.body.innerText.includes("+strconv.Quote(s)+")")
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](strings.Join(conds, " && "))); err != nil {
		text, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Evaluate[string]("document.body.innerText"))
		t.Fatalf("%s: the page does not show %q: %v; it shows:\n%s", what, texts, err, text)
	}
}

// TestRiverUI drives River UI, served by the example with -ui, in headless
// Chromium: it refuses requests without the password and is not on the
// webhook's listener; the job list shows processed deliveries by event type
// and message id; a delivery whose callback fails shows as retryable; once
// the fault is fixed, clicking Retry on its page completes it, and its row
// is committed once.
func TestRiverUI(t *testing.T) {
	t.Parallel()
	chromium(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "inbox.sqlite")
	password := "ui-" + tlwebhooktest.NewMessageID()
	ex := startExample(t, []string{"-addr", "127.0.0.1:0", "-ui", "127.0.0.1:0", "-sqlite", path},
		map[string]string{envUIPassword: password})
	if ex.ui == "" {
		t.Fatal("the example did not say where River UI is")
	}

	t.Run("authentication", func(t *testing.T) {
		for _, c := range []struct {
			name     string
			user, pw string
			want     int
		}{{"none", "", "", 401}, {"wrong password", uiUser, "guess", 401}, {"wrong user", "root", password, 401}, {"right", uiUser, password, 200}} {
			req, _ := http.NewRequest(http.MethodGet, ex.ui+"api/jobs?state=completed", nil)
			if c.user != "" {
				req.SetBasicAuth(c.user, c.pw)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
			}
			if c.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("%s: no Basic challenge", c.name)
			}
		}
		webhookRoot := strings.TrimSuffix(ex.endpoint, "/webhooks/tensorlake") + "/api/jobs?state=completed"
		resp, err := http.Get(webhookRoot)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("River UI's API on the webhook listener: status %d, want 404", resp.StatusCode)
		}
	})

	// The fault: parsed_jobs refuses the row of one job, as a broken
	// table or a constraint would, until it is fixed.
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`create trigger broken before insert on parsed_jobs when new.job_id = 'parse_broken'
		begin select raise(abort, 'parsed_jobs refuses this row'); end`); err != nil {
		t.Fatal(err)
	}

	// Deliveries: a few kinds of events, processed; one whose callback
	// fails.
	ids := map[string]string{}
	for _, typ := range []tlwebhook.EventType{tlwebhook.EventTypeJobCreated, tlwebhook.EventTypeSandboxRunning, tlwebhook.EventTypeApplicationCreated} {
		ids[string(typ)] = tlwebhooktest.NewMessageID()
		if got := ex.send(t, ids[string(typ)], tlwebhooktest.Sample(typ)); got != http.StatusNoContent {
			t.Fatalf("%s: status %d", typ, got)
		}
	}
	okID, brokenID := tlwebhooktest.NewMessageID(), tlwebhooktest.NewMessageID()
	for id, jobID := range map[string]string{okID: "parse_ok", brokenID: "parse_broken"} {
		if got := ex.send(t, id, jobCompleted(t, jobID)); got != http.StatusNoContent {
			t.Fatalf("%s: status %d", jobID, got)
		}
	}

	// River's view of the failing job, from a client of the test's own.
	rc, err := river.NewClient(riversqlite.New(db), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	brokenJob := func() *rivertype.JobRow {
		t.Helper()
		res, err := rc.JobList(context.Background(), river.NewJobListParams().Kinds("tlwebhook_delivery").First(100))
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range res.Jobs {
			if bytes.Contains(j.EncodedArgs, []byte(brokenID)) {
				return j
			}
		}
		t.Fatalf("no job for message %s", brokenID)
		return nil
	}
	// Wait until River has retried it once (its next try is then 16 s
	// away), so that it shows as retryable.
	waitFor(t, 60*time.Second, func() string {
		if j := brokenJob(); j.State != rivertype.JobStateRetryable {
			return fmt.Sprintf("failing job: state %s, attempt %d, next try %v", j.State, j.Attempt, j.ScheduledAt)
		}
		return ""
	})
	jobID := brokenJob().ID

	ctx := browser(t, http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(uiUser+":"+password))}})

	// The job list: processed deliveries by event type and message id.
	do(t, ctx, "opening "+ex.ui+"jobs?state=completed", chromedp.Navigate(ex.ui+"jobs?state=completed"))
	pageShows(t, ctx, "completed jobs", string(tlwebhook.EventTypeJobCreated), string(tlwebhook.EventTypeSandboxRunning),
		string(tlwebhook.EventTypeApplicationCreated), string(tlwebhook.EventTypeJobCompleted), okID, ids[string(tlwebhook.EventTypeSandboxRunning)])
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if img, err := png.Decode(bytes.NewReader(shot)); err != nil || img.Bounds().Dx() < 800 {
		t.Fatalf("screenshot: %v", err)
	}
	out := *screenshot
	if out == "" {
		out = filepath.Join(t.TempDir(), "inbox-river-ui.png")
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the job list: %s (%d bytes)", out, len(shot))

	// The failing delivery, retryable, and its page.
	do(t, ctx, "opening "+ex.ui+"jobs?state=retryable", chromedp.Navigate(ex.ui+"jobs?state=retryable"))
	pageShows(t, ctx, "retryable jobs", brokenID, string(tlwebhook.EventTypeJobCompleted))
	do(t, ctx, "opening "+ex.ui+"jobs/"+strconv.FormatInt(jobID, 10), chromedp.Navigate(ex.ui+"jobs/"+strconv.FormatInt(jobID, 10)))
	pageShows(t, ctx, "the failing job's page", brokenID, string(tlwebhook.EventTypeJobCompleted), "parsed_jobs refuses this row")
	// The payload reads as JSON: unfolded, its members show in clear text.
	// The folded object reads "… 5 keys"; clicking it unfolds it.
	unfold := `(() => {
		const el = [...document.querySelectorAll("*")].find(e => e.childElementCount === 0 && /^… \d+ keys?$/.test(e.textContent.trim()));
		if (!el) return false;
		el.click();
		return true;
	})()`
	do(t, ctx, "unfolding the payload", chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
		_, err := chromedp.Poll[bool](unfold)(ctx, tgt)
		return err
	}))
	pageShows(t, ctx, "the failing job's payload", `"job_id"`, `"parse_broken"`, `"usage"`)

	// Fix the fault, then click Retry, at a moment when River's own next
	// try is at least 5 s away (the fault stays while River's tries come
	// and fail), so that only the click can run the job before then.
	var before *rivertype.JobRow
	waitFor(t, 120*time.Second, func() string {
		j := brokenJob()
		if j.State == rivertype.JobStateRetryable && time.Until(j.ScheduledAt) > 5*time.Second {
			before = j
			return ""
		}
		return fmt.Sprintf("failing job: state %s, attempt %d, next try %v", j.State, j.Attempt, j.ScheduledAt)
	})
	if _, err := db.Exec(`drop trigger broken`); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "clicking Retry", chromedp.Click(chromedp.Search(`//button[normalize-space(.)="Retry"]`)))
	waitFor(t, 30*time.Second, func() string {
		if j := brokenJob(); j.State != rivertype.JobStateCompleted {
			return fmt.Sprintf("after Retry: job state %s, attempt %d", j.State, j.Attempt)
		}
		return ""
	})
	j := brokenJob()
	if j.FinalizedAt == nil || !j.FinalizedAt.Before(before.ScheduledAt) || j.Attempt != before.Attempt+1 {
		t.Fatalf("completed at %v, attempt %d; want attempt %d before River's own next try at %v: the click did not run it",
			j.FinalizedAt, j.Attempt, before.Attempt+1, before.ScheduledAt)
	}
	var rows int
	if err := db.QueryRow(`select count(*) from parsed_jobs where job_id = 'parse_broken'`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("parse_broken rows %d (error %v), want 1", rows, err)
	}
	pageShows(t, ctx, "the retried job's page", "Completed", fmt.Sprintf("Attempt %d", j.Attempt))
}
