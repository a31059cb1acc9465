package riverinbox_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/riverinbox"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// TestStoreDownAnswers503: when the database cannot record a delivery, the
// Handler answers 503 (Svix retries) and never 2xx.
func TestStoreDownAnswers503(t *testing.T) {
	cases := []struct {
		name  string
		inbox func(t *testing.T) tlwebhook.Inbox
	}{
		{"postgres unreachable", func(t *testing.T) tlwebhook.Inbox {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			_ = l.Close() // nothing listens there any more
			cfg, err := pgxpool.ParseConfig("postgres://postgres@" + addr + "/postgres?sslmode=disable&connect_timeout=2")
			if err != nil {
				t.Fatal(err)
			}
			pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: quietLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			return riverinbox.New(client)
		}},
		{"sqlite closed", func(t *testing.T) tlwebhook.Inbox {
			db := newSQLiteDB(t)
			client, err := river.NewClient(riversqlite.New(db), &river.Config{Logger: quietLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			_ = db.Close()
			return riverinbox.New(client)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			secret := tlwebhooktest.NewSecret()
			signer, _ := tlwebhooktest.NewSigner(secret)
			h, err := tlwebhook.NewHandler(secret, tlwebhook.WithInbox(c.inbox(t)), tlwebhook.WithLogger(quietHandlerLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			ran := false
			h.OnSandboxEvent(func(context.Context, *tlwebhook.SandboxEvent) error { ran = true; return nil })
			for i := range 3 {
				if got := serveWith(h, signer, tlwebhooktest.NewMessageID(), sandboxPayload(fmt.Sprintf("evt_down_%d", i))); got != http.StatusServiceUnavailable {
					t.Fatalf("status %d, want 503", got)
				}
			}
			if ran {
				t.Fatal("the callback ran in the request")
			}
		})
	}
}

// TestNo2xxForUncommitted: under load, while the database keeps killing the
// inbox's connections, every delivery answered 204 is in the inbox. (A
// delivery answered 503 may be recorded too: Svix retries it and the copy
// is a duplicate.)
func TestNo2xxForUncommitted(t *testing.T) {
	dbURL := newPostgresDatabase(t)
	b := postgresBackendPool(newPool(t, dbURL, 4))
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 8
	cfg.ConnConfig.RuntimeParams["application_name"] = "riverinbox_victim"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: quietLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	secret := tlwebhooktest.NewSecret()
	signer, _ := tlwebhooktest.NewSigner(secret)
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithInbox(riverinbox.New(client)), tlwebhook.WithLogger(quietHandlerLogger(t)))
	if err != nil {
		t.Fatal(err)
	}

	// The fault: kill the inbox's connections every 50 ms.
	stop := make(chan struct{})
	var killedBusy atomic.Int64
	var killer sync.WaitGroup
	killer.Add(1)
	go func() {
		defer killer.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			// Kill them all; count those killed in the middle of a
			// statement or a transaction.
			busy, err := b.pairs(context.Background(), `select 'busy', count(*) filter (where state <> 'idle')
				from (select state, pg_terminate_backend(pid) from pg_stat_activity where application_name = 'riverinbox_victim') k`)
			if err == nil {
				killedBusy.Add(int64(busy["busy"]))
			}
		}
	}()

	const n, senders = 800, 16
	status := make([]int, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				status[i] = serveWith(h, signer, tlwebhooktest.NewMessageID(), sandboxPayload(fmt.Sprintf("evt_fault_%05d", i)))
			}
		}()
	}
	wg.Wait()
	close(stop)
	killer.Wait()

	recorded, err := b.pairs(context.Background(), "select args->>'key', 1 from river_job")
	if err != nil {
		t.Fatal(err)
	}
	var ok, unavailable, other int
	for i, s := range status {
		key := fmt.Sprintf("evt_fault_%05d", i)
		switch s {
		case http.StatusNoContent:
			ok++
			if recorded[key] != 1 {
				t.Errorf("%s answered 204 but is not in the inbox", key)
			}
		case http.StatusServiceUnavailable:
			unavailable++
		default:
			other++
		}
	}
	t.Logf("%d deliveries: %d answered 204, %d answered 503, %d recorded", n, ok, unavailable, len(recorded))
	if other > 0 {
		t.Errorf("%d answers neither 204 nor 503", other)
	}
	t.Logf("%d connections killed while busy", killedBusy.Load())
	if killedBusy.Load() == 0 {
		t.Error("no connection was killed while busy: the fault injection did nothing, the test shows nothing")
	}
	if ok == 0 {
		t.Error("no delivery was recorded")
	}
}

// TestAnswerDoesNotWaitForCallbacks: every delivery is answered 204 while
// the workers are busy with callbacks that have not returned (they wait
// until the test releases them): the answer waits for the insert only. The
// time to 204 is logged; BENCHMARKS.md quotes it.
func TestAnswerDoesNotWaitForCallbacks(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		b := postgresBackend(t)
		testLatency(t, b, true, 1000)
	})
	// On SQLite, with the one-connection pool River recommends, a callback's
	// transaction holds the connection, so deliveries wait for running
	// callbacks: measured with callbacks that return at once.
	t.Run("sqlite", func(t *testing.T) {
		b := sqliteBackend(t)
		testLatency(t, b, false, 500)
	})
}

func testLatency[TTx any](t *testing.T, b *backend[TTx], block bool, n int) {
	const senders, maxWorkers = 16, 4
	var started, returned atomic.Int64
	release := make(chan struct{})
	// No callback deadline: a held callback returns only when released.
	s := newSetupWith(t, b, maxWorkers, []tlwebhook.HandlerOption{tlwebhook.WithCallbackTimeout(0)}, nil, registerEffects(b, func(ctx context.Context, record func(context.Context) error) error {
		started.Add(1)
		defer returned.Add(1)
		if err := record(ctx); err != nil {
			return err
		}
		if block {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}))
	s.start(t)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	srv := httptest.NewServer(s.handler)
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}

	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	begin := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				body := sandboxPayload(fmt.Sprintf("evt_latency_%05d", i))
				t0 := time.Now()
				status, err := post(context.Background(), client, srv.URL, s.signer, tlwebhooktest.NewMessageID(), body)
				lat[i] = time.Since(t0)
				if err != nil || status != http.StatusNoContent {
					t.Errorf("delivery %d: status %d, error %v", i, status, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	if block {
		// Callbacks that the test has not released yet cannot have
		// returned, unless the answers waited for them.
		if r := returned.Load(); r != 0 {
			t.Errorf("%d callbacks returned before their release", r)
		}
		waitFor(t, 30*time.Second, func() string {
			if started.Load() == maxWorkers {
				return ""
			}
			return fmt.Sprintf("%d callbacks started, want all %d workers busy", started.Load(), maxWorkers)
		})
		close(release)
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(n-1))].Round(10 * time.Microsecond) }
	t.Logf("%s: %d deliveries from %d senders in %v (%.0f/s), %d callbacks started and held: time to 204 p50 %v, p90 %v, p99 %v, max %v",
		b.name, n, senders, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), started.Load(),
		pct(0.50), pct(0.90), pct(0.99), lat[n-1].Round(10*time.Microsecond))
}
