package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/riverinbox"
	"github.com/tlwebhook/tlwebhook/riverinbox/riverinboxtest"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// A test binary started with envChild runs the example instead of the
// tests: "main" runs main with the binary's arguments, "run" runs run, and
// with envHang=1 the callback of a job whose id begins with hangPrefix
// writes its row, prints "HANG <job id>" and waits until the process is
// killed (or the callback's deadline passes).
const (
	envChild   = "TLWEBHOOK_INBOX_EXAMPLE_CHILD"
	envHang    = "TLWEBHOOK_INBOX_EXAMPLE_HANG"
	hangPrefix = "parse_hang_"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "main":
		main()
		os.Exit(0)
	case "run":
		os.Exit(childRun())
	}
	if _, err := chromiumPath(); err != nil && !inCI() {
		riverinboxtest.Notice("examples/inbox: the River UI browser test is skipped: " + err.Error())
	}
	os.Exit(riverinboxtest.Main(m))
}

func childRun() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if os.Getenv(envHang) == "1" {
		testHookCallback = func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
			if !strings.HasPrefix(ev.JobID, hangPrefix) {
				return nil
			}
			fmt.Printf("HANG %s\n", ev.JobID)
			<-ctx.Done()
			return ctx.Err()
		}
	}
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "inbox:", err)
		return 1
	}
	return 0
}

// syncBuffer collects the example's logs while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// example is the example running in this process.
type example struct {
	endpoint string // webhook URL
	ui       string // River UI's URL; "" without -ui
	secret   string
	signer   *tlwebhooktest.Signer
	logs     *syncBuffer
	stop     func() error
}

// startExample runs the example with args and the environment env (its
// only environment), and returns once it listens; it is stopped when the
// test ends, if the test has not stopped it.
func startExample(t *testing.T, args []string, env map[string]string) *example {
	t.Helper()
	if env[envSecret] == "" {
		env[envSecret] = tlwebhooktest.NewSecret()
	}
	signer, err := tlwebhooktest.NewSigner(env[envSecret])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, args, func(k string) string { return env[k] }, pw, logs)
		_ = pw.Close()
	}()
	ex := &example{secret: env[envSecret], signer: signer, logs: logs}
	var once sync.Once
	var stopErr error
	ex.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(60 * time.Second):
				stopErr = errors.New("run did not return within 60 s of the interrupt")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = ex.stop() })
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if u, ok := strings.CutPrefix(line, "listening on "); ok {
			ex.endpoint = u
		}
		if u, ok := strings.CutPrefix(line, "River UI on "); ok {
			ex.ui, _, _ = strings.Cut(u, " ")
		}
		if ex.endpoint != "" && (ex.ui != "" || !hasFlag(args, "-ui")) {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if ex.endpoint == "" {
		t.Fatalf("the example did not start: %v\n%s", <-done, logs)
	}
	return ex
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name {
			return true
		}
	}
	return false
}

// send delivers body signed with message id id and returns the status.
func (ex *example) send(t *testing.T, id string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ex.endpoint, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range ex.signer.HeaderFor(id, time.Now(), body) {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// processedLines counts the example's INFO lines for processed deliveries.
func (ex *example) processedLines() int {
	return strings.Count(ex.logs.String(), `level=INFO msg="delivery processed"`)
}

// jobCompleted is Tensorlake's job.completed sample about the job jobID.
func jobCompleted(t *testing.T, jobID string) []byte {
	t.Helper()
	sample := tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)
	var fields struct {
		JobID string `json:"job_id"`
	}
	if err := json.Unmarshal(sample, &fields); err != nil || fields.JobID == "" {
		t.Fatalf("sample job_id %q: %v", fields.JobID, err)
	}
	old, _ := json.Marshal(fields.JobID)
	repl, _ := json.Marshal(jobID)
	return bytes.Replace(sample, old, repl, 1)
}

// queryer runs a query of two columns, a text and an integer.
type queryer func(q string) (map[string]int, error)

func sqliteQueryer(path string) queryer {
	return func(q string) (map[string]int, error) {
		db, err := sql.Open("sqlite", sqliteDSN(path))
		if err != nil {
			return nil, err
		}
		defer db.Close()
		rows, err := db.QueryContext(context.Background(), q)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		return riverinboxtest.ScanCounts(rows)
	}
}

func postgresQueryer(dbURL string) queryer {
	return func(q string) (map[string]int, error) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			return nil, err
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, q)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		return riverinboxtest.ScanCounts(rows)
	}
}

// waitFor polls cond every 50 ms until it returns "" or timeout passes,
// then fails the test with cond's last message.
func waitFor(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jobStates is a query of the inbox jobs per state.
const jobStates = `select state, count(*) from river_job group by state`

// TestRunEndToEnd runs the example as its main does, on SQLite in the
// working directory (its default) and on PostgreSQL. Signed deliveries over
// HTTP: a completed job sent twice under one message id (Svix's retry) and
// once more under a new message id (a second message about the same event),
// and another completed job. Each is answered 204; three jobs run (the
// retry is recorded once), each logged on one INFO line; parsed_jobs holds
// one row per job (the callback is idempotent), and no job fails. On
// SQLite, a restart resumes: the database file is kept, and a copy of a
// processed delivery is still recognised.
func TestRunEndToEnd(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		t.Chdir(dir)
		ex := startExample(t, nil, map[string]string{})
		q := sqliteQueryer(filepath.Join(dir, "inbox.sqlite"))
		first := endToEnd(t, ex, q)
		if err := ex.stop(); err != nil {
			t.Fatalf("run returned %v after the interrupt", err)
		}

		ex = startExample(t, nil, map[string]string{envSecret: first.secret})
		if got := ex.send(t, first.id, first.body); got != http.StatusNoContent {
			t.Fatalf("copy after the restart: status %d, want 204", got)
		}
		if st, err := q(jobStates); err != nil || st["completed"] != 3 || len(st) != 1 {
			t.Fatalf("after the restart and a copy: jobs %v (error %v), want the 3 completed ones", st, err)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		dbURL := riverinboxtest.PostgresDatabase(t)
		ex := startExample(t, []string{"-database-url", dbURL}, map[string]string{})
		endToEnd(t, ex, postgresQueryer(dbURL))
		if err := ex.stop(); err != nil {
			t.Fatalf("run returned %v after the interrupt", err)
		}
	})
}

// sent is one delivery sent by endToEnd.
type sent struct {
	secret, id string
	body       []byte
}

func endToEnd(t *testing.T, ex *example, q queryer) sent {
	t.Helper()
	first, second := jobCompleted(t, "parse_first"), jobCompleted(t, "parse_second")
	firstID := tlwebhooktest.NewMessageID()
	for _, d := range []struct {
		id   string
		body []byte
	}{
		{firstID, first},
		{firstID, first},                       // Svix's retry
		{tlwebhooktest.NewMessageID(), first},  // another message, same event
		{tlwebhooktest.NewMessageID(), second}, // another job
	} {
		if got := ex.send(t, d.id, d.body); got != http.StatusNoContent {
			t.Fatalf("status %d, want 204", got)
		}
	}
	waitFor(t, 30*time.Second, func() string {
		st, err := q(jobStates)
		if err == nil && st["completed"] == 3 && len(st) == 1 {
			return ""
		}
		return fmt.Sprintf("jobs %v (error %v), want 3 completed", st, err)
	})
	parsed, err := q(`select job_id, pages from parsed_jobs`)
	if err != nil || len(parsed) != 2 || parsed["parse_first"] != 10 || parsed["parse_second"] != 10 {
		t.Fatalf("parsed_jobs %v (error %v), want parse_first and parse_second with 10 pages each", parsed, err)
	}
	// The INFO line is written before the job's completion is recorded.
	if n := ex.processedLines(); n != 3 {
		t.Fatalf("%d INFO lines for processed deliveries, want 3; logs:\n%s", n, ex.logs)
	}
	return sent{secret: ex.secret, id: firstID, body: first}
}

// TestCommandLine: -h prints the usage and exits 0; without the secret, or
// with -ui but no password, the example refuses to start and names the
// variable to set.
func TestCommandLine(t *testing.T) {
	t.Run("-h exits 0", func(t *testing.T) {
		cmd := exec.Command(os.Args[0], "-h")
		cmd.Env = append(os.Environ(), envChild+"=main")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("inbox -h: %v\n%s", err, out)
		}
		for _, want := range []string{"Usage: inbox", envSecret, "-ui", "-callback-timeout"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("usage does not mention %s:\n%s", want, out)
			}
		}
	})
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no secret", nil, map[string]string{}, envSecret},
		{"-ui without a password", []string{"-ui", "127.0.0.1:0"}, map[string]string{envSecret: tlwebhooktest.NewSecret()}, envUIPassword},
		{"no callback timeout", []string{"-callback-timeout", "0"}, map[string]string{envSecret: tlwebhooktest.NewSecret()}, "-callback-timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"-temp", "-addr", "127.0.0.1:0"}, c.args...)
			err := run(context.Background(), args, func(k string) string { return c.env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("run: %v, want an error naming %s", err, c.want)
			}
			if errors.Is(err, flag.ErrHelp) {
				t.Fatalf("run: %v", err)
			}
		})
	}
}

// TestKilledWorkerRunsAgain: a delivery whose worker process was killed in
// the middle of its callback (its row written, not committed) runs again
// once the example is restarted, within the bound riverinbox.Timeouts
// documents for the callback timeout (RescueStuckJobsAfter, River's rescuer
// interval of 30 s, and up to 20 s for a new River leader), and its row is
// committed once.
func TestKilledWorkerRunsAgain(t *testing.T) {
	t.Parallel()
	const callbackTimeout = 2 * time.Second
	_, rescueAfter := riverinbox.Timeouts(callbackTimeout)
	bound := rescueAfter + 30*time.Second + 20*time.Second
	dir := t.TempDir()
	path := filepath.Join(dir, "inbox.sqlite")
	secret := tlwebhooktest.NewSecret()
	args := []string{"-addr", "127.0.0.1:0", "-sqlite", path, "-callback-timeout", callbackTimeout.String()}

	p := startChild(t, args, secret, true)
	signer, _ := tlwebhooktest.NewSigner(secret)
	ex := &example{endpoint: p.endpoint, signer: signer}
	jobID := hangPrefix + "1"
	if got := ex.send(t, tlwebhooktest.NewMessageID(), jobCompleted(t, jobID)); got != http.StatusNoContent {
		t.Fatalf("status %d, want 204", got)
	}
	select {
	case got := <-p.hang:
		if got != jobID {
			t.Fatalf("hanging callback of %s, want %s", got, jobID)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the callback never started; log:\n%s", p.logs)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	killed := time.Now()
	q := sqliteQueryer(path)
	if parsed, err := q(`select job_id, 1 from parsed_jobs`); err != nil || len(parsed) != 0 {
		t.Fatalf("after the kill: parsed_jobs %v (error %v), want the uncommitted row gone", parsed, err)
	}

	p2 := startChild(t, args, secret, false)
	waitFor(t, bound, func() string {
		if parsed, err := q(`select job_id, count(*) from parsed_jobs group by job_id`); err == nil && parsed[jobID] == 1 {
			return ""
		}
		st, err := q(jobStates)
		return fmt.Sprintf("the killed delivery has not run again %v after the kill (bound %v): jobs %v (error %v); log:\n%s",
			time.Since(killed).Round(time.Second), bound, st, err, p2.logs)
	})
	t.Logf("the killed delivery ran again %v after the kill (bound %v)", time.Since(killed).Round(time.Second), bound)
	waitFor(t, 30*time.Second, func() string {
		st, err := q(jobStates)
		if err == nil && st["completed"] == 1 && len(st) == 1 {
			return ""
		}
		return fmt.Sprintf("jobs %v (error %v), want one completed", st, err)
	})
	if parsed, err := q(`select job_id, count(*) from parsed_jobs group by job_id`); err != nil || len(parsed) != 1 || parsed[jobID] != 1 {
		t.Fatalf("parsed_jobs %v (error %v), want %s once", parsed, err, jobID)
	}
}

// child is the example running in a process of its own.
type child struct {
	cmd      *exec.Cmd
	endpoint string
	hang     chan string
	logs     *syncBuffer
	exited   chan struct{}
}

func startChild(t *testing.T, args []string, secret string, hang bool) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envChild+"=run", envSecret+"="+secret)
	if hang {
		cmd.Env = append(cmd.Env, envHang+"=1")
	}
	c := &child{cmd: cmd, hang: make(chan string, 10), logs: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	endpoint := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if u, ok := strings.CutPrefix(line, "listening on "); ok {
				endpoint <- u
			}
			if id, ok := strings.CutPrefix(line, "HANG "); ok {
				c.hang <- id
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-c.exited
		}
	})
	select {
	case c.endpoint = <-endpoint:
	case <-c.exited:
		t.Fatalf("the example exited before listening; log:\n%s", c.logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("the example did not start listening; log:\n%s", c.logs)
	}
	return c
}
