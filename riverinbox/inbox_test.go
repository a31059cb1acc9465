package riverinbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/riverinbox"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// both runs a scenario on PostgreSQL and on SQLite.
func both(t *testing.T, pgFn func(*testing.T, *backend[pgx.Tx]), sqliteFn func(*testing.T, *backend[*sql.Tx])) {
	t.Helper()
	t.Run("postgres", func(t *testing.T) { pgFn(t, postgresBackend(t)) })
	t.Run("sqlite", func(t *testing.T) { sqliteFn(t, sqliteBackend(t)) })
}

// registerEffects makes every callback the tests use record an effect.
func registerEffects[TTx any](b *backend[TTx], wrap func(ctx context.Context, record func(context.Context) error) error) func(*tlwebhook.Handler) {
	run := func(ctx context.Context) error {
		if wrap == nil {
			return b.recordEffect(ctx)
		}
		return wrap(ctx, b.recordEffect)
	}
	return func(h *tlwebhook.Handler) {
		h.OnSandboxEvent(func(ctx context.Context, _ *tlwebhook.SandboxEvent) error { return run(ctx) })
		h.OnJobCompleted(func(ctx context.Context, _ *tlwebhook.JobCompleted) error { return run(ctx) })
	}
}

// TestDuplicatesRunOnce: every copy of a delivery is answered 204, is
// recorded once, and its callback's effect is committed once. Copies are
// Svix's retries of one message (same message id) and a second message
// with the same event_id.
func TestDuplicatesRunOnce(t *testing.T) {
	both(t, testDuplicatesRunOnce[pgx.Tx], testDuplicatesRunOnce[*sql.Tx])
}

func testDuplicatesRunOnce[TTx any](t *testing.T, b *backend[TTx]) {
	s := newSetup(t, b, 4, registerEffects(b, nil))
	const n = 40
	keys := map[string]bool{}
	for i := range n {
		msgID := tlwebhooktest.NewMessageID()
		var body []byte
		var key string
		if i%2 == 0 {
			key = fmt.Sprintf("evt_dup_%d", i)
			body = sandboxPayload(key)
		} else {
			key = msgID
			body = jobPayload(fmt.Sprintf("parse_dup_%d", i))
		}
		keys[key] = true
		for copyN := range 3 {
			if got := s.serve(msgID, body); got != http.StatusNoContent {
				t.Fatalf("delivery %d copy %d: status %d, want 204", i, copyN, got)
			}
		}
		if i%2 == 0 { // the same event in another message
			if got := s.serve(tlwebhooktest.NewMessageID(), body); got != http.StatusNoContent {
				t.Fatalf("delivery %d, second message: status %d, want 204", i, got)
			}
		}
	}
	if states := b.jobStates(t); total(states) != n || states["available"] != n {
		t.Fatalf("before the workers start: inbox jobs %v, want %d available", states, n)
	}
	if effects := b.effects(t); len(effects) != 0 {
		t.Fatalf("effects before the workers start: %v", effects)
	}
	s.start(t)
	waitFor(t, 30*time.Second, b.allCompleted(t, n))
	effects := b.effects(t)
	for k := range keys {
		if effects[k] != 1 {
			t.Errorf("key %s: %d effects, want 1", k, effects[k])
		}
	}
	if len(effects) != len(keys) {
		t.Errorf("%d keys have effects, want %d", len(effects), len(keys))
	}
	// A copy that arrives after completion is still recorded as done.
	if got := s.serve(tlwebhooktest.NewMessageID(), sandboxPayload("evt_dup_0")); got != http.StatusNoContent {
		t.Fatalf("copy after completion: status %d", got)
	}
	// ServeHTTP answered 204 after the insert committed, or found the key
	// recorded: the table is final now.
	if states := b.jobStates(t); total(states) != n {
		t.Fatalf("copy after completion added a job: %v", states)
	}
}

// TestForgedDeliveryEnqueuesNothing: requests that do not verify are
// answered 401 (or 400 for a verified body that is not JSON) and leave the
// inbox empty.
func TestForgedDeliveryEnqueuesNothing(t *testing.T) {
	both(t, testForged[pgx.Tx], testForged[*sql.Tx])
}

func testForged[TTx any](t *testing.T, b *backend[TTx]) {
	s := newSetup(t, b, 2, registerEffects(b, nil))
	s.start(t)
	other, err := tlwebhooktest.NewSigner(tlwebhooktest.NewSecret())
	if err != nil {
		t.Fatal(err)
	}
	stale, err := tlwebhooktest.NewSigner(s.secret)
	if err != nil {
		t.Fatal(err)
	}
	stale.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	body := sandboxPayload("evt_forged")
	cases := []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"wrong secret", func() *http.Request { return other.NewRequest("/", body) }, http.StatusUnauthorized},
		{"stale timestamp", func() *http.Request { return stale.NewRequest("/", body) }, http.StatusUnauthorized},
		{"tampered body", func() *http.Request {
			req := s.signer.NewRequest("/", body)
			req.Body = http.NoBody
			req.Body = readCloser(strings.Replace(string(body), "running", "failed!", 1))
			return req
		}, http.StatusUnauthorized},
		{"no signature", func() *http.Request {
			req := s.signer.NewRequest("/", body)
			req.Header.Del(tlwebhook.HeaderSvixSignature)
			return req
		}, http.StatusUnauthorized},
		{"signed, not JSON", func() *http.Request { return s.signer.NewRequest("/", []byte("not json")) }, http.StatusBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &statusRecorder{header: http.Header{}}
			s.handler.ServeHTTP(rec, c.req())
			if rec.status() != c.want {
				t.Fatalf("status %d, want %d", rec.status(), c.want)
			}
		})
	}
	// Every answer above was given before any insert could start.
	if states := b.jobStates(t); total(states) != 0 {
		t.Fatalf("forged deliveries were enqueued: %v", states)
	}
	if effects := b.effects(t); len(effects) != 0 {
		t.Fatalf("forged deliveries had effects: %v", effects)
	}
}

// TestPermanentCancelsJob: a callback that returns Permanent leaves its job
// cancelled, its writes rolled back, and a later copy of the delivery is not
// run again.
func TestPermanentCancelsJob(t *testing.T) {
	both(t, testPermanent[pgx.Tx], testPermanent[*sql.Tx])
}

func testPermanent[TTx any](t *testing.T, b *backend[TTx]) {
	var calls atomic.Int32
	s := newSetup(t, b, 2, registerEffects(b, func(ctx context.Context, record func(context.Context) error) error {
		calls.Add(1)
		if err := record(ctx); err != nil {
			return err
		}
		return tlwebhook.Permanent(errors.New("this event can never be handled"))
	}))
	s.start(t)
	msgID := tlwebhooktest.NewMessageID()
	body := sandboxPayload("evt_permanent")
	if got := s.serve(msgID, body); got != http.StatusNoContent {
		t.Fatalf("status %d, want 204", got)
	}
	waitFor(t, 20*time.Second, func() string {
		if st := b.jobStates(t); st["cancelled"] != 1 || total(st) != 1 {
			return fmt.Sprintf("want one cancelled job, have %v", st)
		}
		return ""
	})
	if effects := b.effects(t); len(effects) != 0 {
		t.Fatalf("a cancelled job committed effects: %v", effects)
	}
	if got := s.serve(msgID, body); got != http.StatusNoContent {
		t.Fatalf("copy of a cancelled delivery: status %d, want 204", got)
	}
	// The 204 came after the insert, which recorded nothing: no job to run.
	if st := b.jobStates(t); st["cancelled"] != 1 || total(st) != 1 {
		t.Fatalf("after a copy: jobs %v, want the one cancelled job", st)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("callback ran %d times, want 1", n)
	}
}

// TestFailuresRetryAndRollBack: a callback that fails, then panics, then
// succeeds has its job retried by River; only the successful run's writes
// are committed.
func TestFailuresRetryAndRollBack(t *testing.T) {
	both(t, testRetries[pgx.Tx], testRetries[*sql.Tx])
}

func testRetries[TTx any](t *testing.T, b *backend[TTx]) {
	var calls atomic.Int32
	s := newSetup(t, b, 2, registerEffects(b, func(ctx context.Context, record func(context.Context) error) error {
		n := calls.Add(1)
		if err := record(ctx); err != nil {
			return err
		}
		switch n {
		case 1:
			return errors.New("temporary failure")
		case 2:
			panic("callback bug")
		}
		return nil
	}))
	s.start(t)
	if got := s.serve(tlwebhooktest.NewMessageID(), sandboxPayload("evt_retry")); got != http.StatusNoContent {
		t.Fatalf("status %d, want 204", got)
	}
	waitFor(t, 20*time.Second, b.allCompleted(t, 1))
	if n := calls.Load(); n != 3 {
		t.Fatalf("callback ran %d times, want 3", n)
	}
	if effects := b.effects(t); effects["evt_retry"] != 1 || len(effects) != 1 {
		t.Fatalf("effects %v, want evt_retry once", effects)
	}
	errs, err := b.pairs(context.Background(), "select cast(attempt as text), count(*) from river_job group by attempt")
	if err != nil {
		t.Fatal(err)
	}
	if errs["3"] != 1 {
		t.Fatalf("job attempts %v, want one job at attempt 3", errs)
	}
}

// TestUndecodablePayloadCancels: a job whose payload no longer decodes (for
// example inserted by hand) is cancelled, since retrying cannot fix it.
func TestUndecodablePayloadCancels(t *testing.T) {
	both(t, testUndecodable[pgx.Tx], testUndecodable[*sql.Tx])
}

func testUndecodable[TTx any](t *testing.T, b *backend[TTx]) {
	s := newSetup(t, b, 2, registerEffects(b, nil))
	s.start(t)
	args := riverinbox.Args{ID: "msg_bad", Timestamp: time.Now(), Key: "msg_bad", Payload: []byte("[1, 2")}
	if _, err := s.client.Insert(context.Background(), args, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() string {
		if st := b.jobStates(t); st["cancelled"] != 1 {
			return fmt.Sprintf("want one cancelled job, have %v", st)
		}
		return ""
	})
}

// TestTxFromContextOutsideWorker: a callback run by ServeHTTP (no inbox)
// has no transaction.
func TestTxFromContextOutsideWorker(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithLogger(quietHandlerLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	var pgOK, sqlOK, ran bool
	h.OnSandboxEvent(func(ctx context.Context, _ *tlwebhook.SandboxEvent) error {
		_, pgOK = riverinbox.TxFromContext[pgx.Tx](ctx)
		_, sqlOK = riverinbox.TxFromContext[*sql.Tx](ctx)
		ran = true
		return nil
	})
	signer, _ := tlwebhooktest.NewSigner(secret)
	if got := serveWith(h, signer, tlwebhooktest.NewMessageID(), sandboxPayload("evt_plain")); got != http.StatusNoContent || !ran {
		t.Fatalf("status %d, ran %v", got, ran)
	}
	if pgOK || sqlOK {
		t.Fatalf("TxFromContext outside a worker: pgx %v, sql %v; want false", pgOK, sqlOK)
	}
}

// TestWorkerOfWrongTxType: a worker whose type parameter is not the
// client's transaction type fails its jobs with an error that says so,
// rather than running callbacks without a transaction.
func TestWorkerOfWrongTxType(t *testing.T) {
	b := sqliteBackend(t)
	secret := tlwebhooktest.NewSecret()
	var ran atomic.Bool
	workers := river.NewWorkers()
	client, err := river.NewClient(b.driver, &river.Config{
		Workers:           workers,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 1}},
		FetchCooldown:     10 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		MaxAttempts:       1,
		Logger:            quietLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithInbox(riverinbox.New(client)), tlwebhook.WithLogger(quietHandlerLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	h.OnSandboxEvent(func(context.Context, *tlwebhook.SandboxEvent) error { ran.Store(true); return nil })
	river.AddWorker(workers, riverinbox.NewWorker[pgx.Tx](h)) // wrong: the client's is *sql.Tx
	s := &setup[*sql.Tx]{secret: secret, handler: h, client: client}
	s.signer, _ = tlwebhooktest.NewSigner(secret)
	s.start(t)
	if got := s.serve(tlwebhooktest.NewMessageID(), sandboxPayload("evt_wrong_type")); got != http.StatusNoContent {
		t.Fatalf("status %d", got)
	}
	waitFor(t, 20*time.Second, func() string {
		if st := b.jobStates(t); st["discarded"] != 1 {
			return fmt.Sprintf("want the job discarded after its one attempt, have %v", st)
		}
		return ""
	})
	if ran.Load() {
		t.Fatal("the callback ran without a transaction")
	}
	errs, err := b.pairs(context.Background(), "select errors, 1 from river_job")
	if err != nil {
		t.Fatal(err)
	}
	for e := range errs {
		if !strings.Contains(e, "type parameter") {
			t.Fatalf("job errors %s do not name the cause", e)
		}
	}
}

// TestJobNoLongerRunningRollsBack: when the job is no longer running by the
// time its callback returns (River rescued it as stuck, say, while the
// callback was slow), the worker cannot complete it, so it rolls the
// callback's writes back; the next attempt commits them once. PostgreSQL
// only: the callback changes the job from a second connection, which a
// one-connection SQLite pool cannot give.
func TestJobNoLongerRunningRollsBack(t *testing.T) {
	b := postgresBackend(t)
	var calls atomic.Int32
	s := newSetup(t, b, 2, registerEffects(b, func(ctx context.Context, record func(context.Context) error) error {
		if err := record(ctx); err != nil {
			return err
		}
		if calls.Add(1) == 1 {
			// What a rescue does, from outside the worker's transaction.
			return b.exec(ctx, "update river_job set state = 'available', scheduled_at = now() where state = 'running'")
		}
		return nil
	}))
	s.start(t)
	if got := s.serve(tlwebhooktest.NewMessageID(), sandboxPayload("evt_rescued")); got != http.StatusNoContent {
		t.Fatalf("status %d, want 204", got)
	}
	waitFor(t, 20*time.Second, b.allCompleted(t, 1))
	if n := calls.Load(); n != 2 {
		t.Fatalf("callback ran %d times, want 2", n)
	}
	if effects := b.effects(t); effects["evt_rescued"] != 1 {
		t.Fatalf("effects %v, want evt_rescued once", effects)
	}
}

// TestConcurrentCopies: copies of one delivery enqueued at the same moment,
// among other deliveries, are recorded once, whether the inbox inserts them
// in shared transactions (the default) or one by one (WithMaxBatch(1)).
func TestConcurrentCopies(t *testing.T) {
	for _, maxBatch := range []int{riverinbox.DefaultMaxBatch, 1} {
		t.Run(fmt.Sprintf("maxBatch=%d", maxBatch), func(t *testing.T) {
			both(t,
				func(t *testing.T, b *backend[pgx.Tx]) { testConcurrentCopies(t, b, maxBatch) },
				func(t *testing.T, b *backend[*sql.Tx]) { testConcurrentCopies(t, b, maxBatch) })
		})
	}
}

func testConcurrentCopies[TTx any](t *testing.T, b *backend[TTx], maxBatch int) {
	client, err := river.NewClient(b.driver, &river.Config{Logger: quietLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ib := riverinbox.New(client, riverinbox.WithMaxBatch(maxBatch))
	const copies, others = 30, 30
	body := sandboxPayload("evt_same")
	var wg sync.WaitGroup
	errs := make(chan error, copies+others)
	for i := range copies + others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := tlwebhook.Delivery{ID: tlwebhooktest.NewMessageID(), Timestamp: time.Now(), EventID: "evt_same"}
			payload := body
			if i >= copies {
				d.EventID = fmt.Sprintf("evt_other_%d", i)
				payload = sandboxPayload(d.EventID)
			}
			errs <- ib.Enqueue(context.Background(), d, payload)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	keys, err := b.pairs(context.Background(), "select "+jsonKey(b)+", count(*) from river_job group by 1")
	if err != nil {
		t.Fatal(err)
	}
	if keys["evt_same"] != 1 || len(keys) != others+1 {
		t.Fatalf("jobs per key %v, want evt_same once and %d others", keys, others)
	}
}

// jsonKey is the SQL expression of an inbox job's key.
func jsonKey[TTx any](b *backend[TTx]) string {
	if b.name == "sqlite" {
		return "json_extract(args, '$.key')"
	}
	return "args->>'key'"
}
