package riverinbox_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/riverinbox"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// The crash test runs two receivers as separate processes (this test
// binary, re-executed with envReceiver set) on one PostgreSQL database, each
// with the Handler, an insert-only River client for its inbox, and a working
// River client, as the package documentation sets them up. A sender plays
// Svix: thousands of signed deliveries, some sent again after their 2xx and
// some sent twice at once, a few events in two messages, every non-2xx or
// broken connection retried with backoff. The receivers fail on purpose: 2%
// of inserts fail (503, nothing recorded), 2% succeed but answer 503 (the
// ack is lost, Svix retries a delivery already recorded), 3% of callbacks
// return an error and 1% panic after writing their effect. Mid-run, receiver
// 0 is killed with SIGKILL while some of its callbacks have written their
// effect but not committed, then restarted. At the end every delivery must
// have exactly one committed effect row: none lost, none doubled.

const (
	envCrashDB     = "TLWEBHOOK_RIVERINBOX_CRASH_DB"
	envCrashSecret = "TLWEBHOOK_RIVERINBOX_CRASH_SECRET"
	envCrashName   = "TLWEBHOOK_RIVERINBOX_CRASH_NAME" // receiver-<index>-<generation>
	envCrashHang   = "TLWEBHOOK_RIVERINBOX_CRASH_HANG" // "1": block slow deliveries until killed
)

// slowPrefix marks the job ids of deliveries whose callback, in a receiver
// started with envCrashHang, writes its effect and then blocks: the kill
// finds them mid-transaction.
const slowPrefix = "parse_slow_"

// receiverMain is the receiver process of the crash test.
func receiverMain() int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := runReceiver(logger); err != nil {
		logger.Error("receiver failed", "error", err.Error())
		return 1
	}
	return 0
}

func runReceiver(logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	name := os.Getenv(envCrashName)
	hang := os.Getenv(envCrashHang) == "1"

	cfg, err := pgxpool.ParseConfig(os.Getenv(envCrashDB))
	if err != nil {
		return err
	}
	cfg.MaxConns = 24
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	b := postgresBackendPool(pool)

	// The Handler inserts with an insert-only client.
	ins, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: logger})
	if err != nil {
		return err
	}
	h, err := tlwebhook.NewHandler(os.Getenv(envCrashSecret),
		tlwebhook.WithInbox(&flakyInbox{next: riverinbox.New(ins)}),
		tlwebhook.WithLogger(logger))
	if err != nil {
		return err
	}
	var stdout sync.Mutex
	say := func(format string, args ...any) {
		stdout.Lock()
		defer stdout.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	callback := func(ctx context.Context, slow bool) error {
		time.Sleep(time.Duration(mathrand.IntN(5)) * time.Millisecond)
		if err := b.recordEffect(ctx); err != nil {
			return err
		}
		if slow && hang {
			d, _ := tlwebhook.DeliveryFromContext(ctx)
			say("SLOW %s", d.IdempotencyKey())
			<-ctx.Done() // killed, or the job times out (JobTimeout)
			return ctx.Err()
		}
		switch r := mathrand.IntN(100); {
		case r < 3:
			return errors.New("callback failed on purpose")
		case r < 4:
			panic("callback panicked on purpose")
		}
		return nil
	}
	h.OnSandboxEvent(func(ctx context.Context, _ *tlwebhook.SandboxEvent) error { return callback(ctx, false) })
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		return callback(ctx, strings.HasPrefix(ev.JobID, slowPrefix))
	})

	workers := river.NewWorkers()
	river.AddWorker(workers, riverinbox.NewWorker[pgx.Tx](h))
	wc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		ID:                          name,
		Workers:                     workers,
		Queues:                      map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 8}},
		FetchCooldown:               10 * time.Millisecond,
		FetchPollInterval:           100 * time.Millisecond,
		JobTimeout:                  4 * time.Second,
		RescueStuckJobsAfter:        5 * time.Second,
		RetryPolicy:                 crashRetry{},
		CompletedJobRetentionPeriod: riverinbox.MinRetention,
		CancelledJobRetentionPeriod: riverinbox.MinRetention,
		Logger:                      logger,
	})
	if err != nil {
		return err
	}
	if err := wc.Start(ctx); err != nil {
		return err
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	say("ADDR %s", l.Addr())

	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return wc.Stop(sctx)
}

// crashRetry retries failed jobs after 100-300 ms.
type crashRetry struct{}

func (crashRetry) NextRetry(*rivertype.JobRow) time.Time {
	return time.Now().Add(time.Duration(100+mathrand.IntN(200)) * time.Millisecond)
}

// flakyInbox fails some inserts before and some after recording them.
type flakyInbox struct{ next tlwebhook.Inbox }

func (f *flakyInbox) Enqueue(ctx context.Context, d tlwebhook.Delivery, payload []byte) error {
	r := mathrand.IntN(100)
	if r < 2 {
		return errors.New("insert failed on purpose")
	}
	if err := f.next.Enqueue(ctx, d, payload); err != nil {
		return err
	}
	if r < 4 {
		return errors.New("recorded, but the answer is lost on purpose")
	}
	return nil
}

// receiverProc is one running receiver process.
type receiverProc struct {
	cmd    *exec.Cmd
	addr   string
	slow   chan string // keys of slow callbacks that started
	exited chan struct{}
}

func startReceiver(t *testing.T, dbURL, secret, name string, hang bool, logDir string) *receiverProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(),
		envReceiver+"=1",
		envCrashDB+"="+dbURL,
		envCrashSecret+"="+secret,
		envCrashName+"="+name,
	)
	if hang {
		cmd.Env = append(cmd.Env, envCrashHang+"=1")
	}
	logFile, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &receiverProc{cmd: cmd, slow: make(chan string, 1000), exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "ADDR "):
				addr <- strings.TrimPrefix(line, "ADDR ")
			case strings.HasPrefix(line, "SLOW "):
				select {
				case p.slow <- strings.TrimPrefix(line, "SLOW "):
				default:
				}
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case a := <-addr:
		p.addr = "http://" + a + "/webhooks"
	case <-p.exited:
		t.Fatalf("receiver %s exited before listening; its log:\n%s", name, tail(filepath.Join(logDir, name+".log")))
	case <-time.After(60 * time.Second):
		t.Fatalf("receiver %s did not start listening", name)
	}
	return p
}

func tail(name string) string {
	s := readFile(name)
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// crashMessage is one Svix message of the crash test.
type crashMessage struct {
	id   string
	body []byte
	key  string
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dbURL := newPostgresDatabase(t)
	b := postgresBackendPool(newPool(t, dbURL, 4))
	secret := tlwebhooktest.NewSecret()
	signer, err := tlwebhooktest.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	start := time.Now()

	// Messages: half sandbox events (key: event_id), half document
	// ingestion events (key: message id); every 25th sandbox event is also
	// sent as a second message; every 40th job is slow.
	const n = 2000
	var msgs []crashMessage
	keys := map[string]bool{}
	for i := range n {
		m := crashMessage{id: tlwebhooktest.NewMessageID()}
		if i%2 == 0 {
			m.key = fmt.Sprintf("evt_crash_%05d", i)
			m.body = sandboxPayload(m.key)
			if i%50 == 0 {
				msgs = append(msgs, crashMessage{id: tlwebhooktest.NewMessageID(), body: m.body, key: m.key})
			}
		} else {
			jobID := fmt.Sprintf("parse_%05d", i)
			if i%40 == 1 {
				jobID = fmt.Sprintf("%s%05d", slowPrefix, i)
			}
			m.key = m.id
			m.body = jobPayload(jobID)
		}
		keys[m.key] = true
		msgs = append(msgs, m)
	}
	mathrand.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })

	var mu sync.Mutex
	procs := []*receiverProc{
		startReceiver(t, dbURL, secret, "receiver-0-0", true, logDir),
		startReceiver(t, dbURL, secret, "receiver-1-0", false, logDir),
	}
	live := []string{procs[0].addr, procs[1].addr}
	pick := func() string {
		mu.Lock()
		defer mu.Unlock()
		var ok []string
		for _, a := range live {
			if a != "" {
				ok = append(ok, a)
			}
		}
		return ok[mathrand.IntN(len(ok))]
	}

	// The sender: each send retries until a 2xx, with backoff, as Svix does
	// (compressed from minutes to milliseconds).
	var (
		requests, non2xx, connErrs, acked atomic.Int64
		failed                            atomic.Int64
	)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	deadline := time.Now().Add(90 * time.Second)
	send := func(m crashMessage) {
		backoff := 20 * time.Millisecond
		for {
			requests.Add(1)
			status, err := post(context.Background(), client, pick(), signer, m.id, m.body)
			switch {
			case err != nil:
				connErrs.Add(1)
			case status >= 200 && status < 300:
				return
			default:
				non2xx.Add(1)
			}
			if time.Now().After(deadline) {
				failed.Add(1)
				return
			}
			time.Sleep(backoff + time.Duration(mathrand.IntN(20))*time.Millisecond)
			backoff = min(2*backoff, 500*time.Millisecond)
		}
	}
	work := make(chan func(), 64)
	var senders sync.WaitGroup
	for range 32 {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for f := range work {
				f()
			}
		}()
	}

	// The killer: once a third of the messages are acknowledged and a slow
	// callback has just written its effect on receiver 0 (it then blocks
	// until the job's timeout, seconds later), SIGKILL receiver 0.
	killed := make(chan []string, 1)
	go func() {
		for acked.Load() < n/3 {
			time.Sleep(10 * time.Millisecond)
		}
		for len(procs[0].slow) > 0 { // stale: these may have timed out
			<-procs[0].slow
		}
		var inFlight []string
		select {
		case k := <-procs[0].slow:
			inFlight = append(inFlight, k)
		case <-time.After(30 * time.Second):
		}
		mu.Lock()
		live[0] = ""
		mu.Unlock()
		_ = procs[0].cmd.Process.Signal(syscall.SIGKILL)
		<-procs[0].exited
		killed <- inFlight
	}()

	var dups sync.WaitGroup
	for i, m := range msgs {
		switch {
		case i%10 == 0: // two copies at once
			work <- func() { send(m); acked.Add(1) }
			work <- func() { send(m) }
		case i%4 == 0: // a copy after the 2xx
			dups.Add(1)
			work <- func() {
				send(m)
				acked.Add(1)
				go func() { defer dups.Done(); time.Sleep(50 * time.Millisecond); send(m) }()
			}
		default:
			work <- func() { send(m); acked.Add(1) }
		}
	}

	var inFlight []string
	select {
	case inFlight = <-killed:
	case <-time.After(60 * time.Second):
		t.Fatal("receiver 0 was never killed")
	}
	killedAt := time.Since(start)
	// Restart receiver 0, without hanging callbacks this time.
	p := startReceiver(t, dbURL, secret, "receiver-0-1", false, logDir)
	mu.Lock()
	live[0] = p.addr
	mu.Unlock()

	dups.Wait()
	close(work)
	senders.Wait()
	sentAt := time.Since(start)
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d deliveries were never acknowledged", f)
	}
	if len(inFlight) == 0 {
		t.Fatal("the kill found no callback in flight on receiver 0; the test proved nothing")
	}

	// Every key: one job, completed, and exactly one effect.
	waitFor(t, 90*time.Second, func() string {
		st := b.jobStates(t)
		if st["completed"] == len(keys) && total(st) == len(keys) {
			return ""
		}
		return fmt.Sprintf("want %d completed jobs, have %v", len(keys), st)
	})
	effects := b.effects(t)
	lost, doubled := 0, 0
	for k := range keys {
		switch c := effects[k]; {
		case c == 0:
			lost++
		case c > 1:
			doubled++
		}
	}
	for k := range effects {
		if !keys[k] {
			t.Errorf("effect for unknown key %s", k)
		}
	}
	if lost > 0 || doubled > 0 {
		t.Fatalf("%d keys lost, %d doubled (e.g. %s)", lost, doubled, fmtKeys(effects, func(c int) bool { return c != 1 }, 5))
	}
	for _, k := range inFlight {
		if effects[k] != 1 {
			t.Errorf("key %s, in flight at the kill: %d effects", k, effects[k])
		}
	}
	rescued, err := b.pairs(context.Background(), "select 'rescued', count(*) from river_job where errors::text like '%Stuck job rescued%'")
	if err != nil {
		t.Fatal(err)
	}
	retried, err := b.pairs(context.Background(), "select 'retried', count(*) from river_job where attempt > 1")
	if err != nil {
		t.Fatal(err)
	}
	if rescued["rescued"] < len(inFlight) {
		t.Errorf("%d jobs rescued after the kill, want at least the %d in flight", rescued["rescued"], len(inFlight))
	}
	t.Logf("%d messages (%d keys), %d requests: %d non-2xx, %d connection errors; receiver 0 killed at %v with %d callback(s) mid-transaction; all sent at %v, all completed at %v; %d jobs retried, %d rescued",
		len(msgs), len(keys), requests.Load(), non2xx.Load(), connErrs.Load(), killedAt.Round(time.Millisecond), len(inFlight),
		sentAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), retried["retried"], rescued["rescued"])
	if t.Failed() {
		for _, name := range []string{"receiver-0-0", "receiver-0-1", "receiver-1-0"} {
			t.Logf("%s log:\n%s", name, tail(filepath.Join(logDir, name+".log")))
		}
	}
}
