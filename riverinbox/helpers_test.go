package riverinbox_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/riverinbox"
	"github.com/tlwebhook/tlwebhook/riverinbox/riverinboxtest"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// A backend is one database under test, with the few queries the tests need
// written for it.
type backend[TTx any] struct {
	name   string
	driver riverdriver.Driver[TTx]
	// execTx runs a statement in a worker's transaction.
	execTx func(ctx context.Context, tx TTx, q string, args ...any) error
	// exec runs a statement outside any transaction.
	exec func(ctx context.Context, q string, args ...any) error
	// pairs runs a query of two columns, a text and a count.
	pairs func(ctx context.Context, q string) (map[string]int, error)
	ph    func(n int) string
}

func postgresBackend(tb testing.TB) *backend[pgx.Tx] {
	tb.Helper()
	return postgresBackendPool(newPool(tb, newPostgresDatabase(tb), 20))
}

func postgresBackendPool(pool *pgxpool.Pool) *backend[pgx.Tx] {
	return &backend[pgx.Tx]{
		name:   "postgres",
		driver: riverpgxv5.New(pool),
		execTx: func(ctx context.Context, tx pgx.Tx, q string, args ...any) error {
			_, err := tx.Exec(ctx, q, args...)
			return err
		},
		exec: func(ctx context.Context, q string, args ...any) error {
			_, err := pool.Exec(ctx, q, args...)
			return err
		},
		pairs: func(ctx context.Context, q string) (map[string]int, error) {
			rows, err := pool.Query(ctx, q)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			return riverinboxtest.ScanCounts(rows)
		},
		ph: func(n int) string { return fmt.Sprintf("$%d", n) },
	}
}

func sqliteBackend(tb testing.TB) *backend[*sql.Tx] {
	tb.Helper()
	return sqliteBackendDB(newSQLiteDB(tb))
}

func sqliteBackendDB(db *sql.DB) *backend[*sql.Tx] {
	return &backend[*sql.Tx]{
		name:   "sqlite",
		driver: riversqlite.New(db),
		execTx: func(ctx context.Context, tx *sql.Tx, q string, args ...any) error {
			_, err := tx.ExecContext(ctx, q, args...)
			return err
		},
		exec: func(ctx context.Context, q string, args ...any) error {
			_, err := db.ExecContext(ctx, q, args...)
			return err
		},
		pairs: func(ctx context.Context, q string) (map[string]int, error) {
			rows, err := db.QueryContext(ctx, q)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			return riverinboxtest.ScanCounts(rows)
		},
		ph: func(int) string { return "?" },
	}
}

// recordEffect is a callback body: it writes one effects row for the
// delivery in the worker's transaction.
func (b *backend[TTx]) recordEffect(ctx context.Context) error {
	tx, ok := riverinbox.TxFromContext[TTx](ctx)
	if !ok {
		return errors.New("no worker transaction in the callback's context")
	}
	d, ok := tlwebhook.DeliveryFromContext(ctx)
	if !ok {
		return errors.New("no delivery in the callback's context")
	}
	return b.execTx(ctx, tx, "insert into effects (key, delivery_id, pid) values ("+b.ph(1)+", "+b.ph(2)+", "+b.ph(3)+")",
		d.IdempotencyKey(), d.ID, os.Getpid())
}

// effects returns the number of committed effect rows per key.
func (b *backend[TTx]) effects(tb testing.TB) map[string]int {
	tb.Helper()
	m, err := b.pairs(context.Background(), "select key, count(*) from effects group by key")
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// jobStates returns the number of inbox jobs per state.
func (b *backend[TTx]) jobStates(tb testing.TB) map[string]int {
	tb.Helper()
	m, err := b.pairs(context.Background(), "select state, count(*) from river_job where kind = '"+riverinbox.Kind+"' group by state")
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// fastRetry retries a failed job after 50 ms instead of River's backoff
// (attempt^4 seconds), so that retry tests finish quickly.
type fastRetry struct{}

func (fastRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(50 * time.Millisecond) }

// setup is one receiver: a Handler with an inbox on one River client that
// also works the inbox's jobs (the set-up the package recommends for
// SQLite, and fine on PostgreSQL).
type setup[TTx any] struct {
	secret  string
	signer  *tlwebhooktest.Signer
	handler *tlwebhook.Handler
	client  *river.Client[TTx]
}

// newSetup builds a receiver on b. register adds callbacks to the handler;
// the client is started when the test calls start.
func newSetup[TTx any](tb testing.TB, b *backend[TTx], maxWorkers int, register func(h *tlwebhook.Handler)) *setup[TTx] {
	tb.Helper()
	return newSetupWith(tb, b, maxWorkers, nil, nil, register)
}

// newSetupWith is newSetup with options for the Handler and the inbox.
func newSetupWith[TTx any](tb testing.TB, b *backend[TTx], maxWorkers int, hopts []tlwebhook.HandlerOption, iopts []riverinbox.Option,
	register func(h *tlwebhook.Handler)) *setup[TTx] {
	tb.Helper()
	secret := tlwebhooktest.NewSecret()
	signer, err := tlwebhooktest.NewSigner(secret)
	if err != nil {
		tb.Fatal(err)
	}
	workers := river.NewWorkers()
	client, err := river.NewClient(b.driver, &river.Config{
		Workers:                     workers,
		Queues:                      map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: maxWorkers}},
		RetryPolicy:                 fastRetry{},
		FetchCooldown:               10 * time.Millisecond,
		FetchPollInterval:           50 * time.Millisecond,
		CompletedJobRetentionPeriod: riverinbox.MinRetention,
		CancelledJobRetentionPeriod: riverinbox.MinRetention,
		Logger:                      quietLogger(tb),
	})
	if err != nil {
		tb.Fatal(err)
	}
	opts := append([]tlwebhook.HandlerOption{tlwebhook.WithInbox(riverinbox.New(client, iopts...)), tlwebhook.WithLogger(quietHandlerLogger(tb))}, hopts...)
	h, err := tlwebhook.NewHandler(secret, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	river.AddWorker(workers, riverinbox.NewWorker[TTx](h))
	if register != nil {
		register(h)
	}
	return &setup[TTx]{secret: secret, signer: signer, handler: h, client: client}
}

func (s *setup[TTx]) start(tb testing.TB) {
	tb.Helper()
	if err := s.client.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.client.StopAndCancel(ctx)
	})
}

// serve delivers one signed request for body with message id id to the
// handler and returns the status.
func (s *setup[TTx]) serve(id string, body []byte) int {
	return serveWith(s.handler, s.signer, id, body)
}

func serveWith(h http.Handler, signer *tlwebhooktest.Signer, id string, body []byte) int {
	req, _ := http.NewRequest(http.MethodPost, "http://receiver.test/webhooks", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range signer.HeaderFor(id, time.Now(), body) {
		req.Header[k] = v
	}
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, req)
	return rec.status()
}

// statusRecorder is a minimal http.ResponseWriter that keeps the status.
type statusRecorder struct {
	header http.Header
	code   int
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return len(b), nil
}
func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *statusRecorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// post sends one signed delivery over HTTP to url and returns the status.
func post(ctx context.Context, client *http.Client, url string, signer *tlwebhooktest.Signer, id string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range signer.HeaderFor(id, time.Now(), body) {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// Payloads: Tensorlake's sample events with the fields that identify them
// replaced. A sandbox event's key is its event_id; a document ingestion
// event has none, so its key is the message id.
var (
	sandboxSample = tlwebhooktest.Sample(tlwebhook.EventTypeSandboxRunning)
	jobSample     = tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)
)

func replaceField(sample []byte, field, value string) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(sample, &m); err != nil {
		panic(err)
	}
	old, ok := m[field]
	if !ok {
		panic("sample has no field " + field)
	}
	newValue, _ := json.Marshal(value)
	out := bytes.Replace(sample, old, newValue, 1)
	if bytes.Equal(out, sample) {
		panic("field " + field + " not replaced")
	}
	return out
}

func sandboxPayload(eventID string) []byte { return replaceField(sandboxSample, "event_id", eventID) }
func jobPayload(jobID string) []byte       { return replaceField(jobSample, "job_id", jobID) }

// waitFor polls cond every 50 ms until it returns "" or the timeout passes,
// then fails the test with cond's last message.
func waitFor(tb testing.TB, timeout time.Duration, cond func() string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// allCompleted is a waitFor condition: n inbox jobs, all completed.
func (b *backend[TTx]) allCompleted(tb testing.TB, n int) func() string {
	return func() string {
		states := b.jobStates(tb)
		if states["completed"] == n && total(states) == n {
			return ""
		}
		return fmt.Sprintf("want %d completed inbox jobs, have %v", n, states)
	}
}

func fmtKeys(m map[string]int, bad func(int) bool, limit int) string {
	var parts []string
	for k, v := range m {
		if bad(v) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
			if len(parts) == limit {
				break
			}
		}
	}
	return strings.Join(parts, ", ")
}

func readCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
