package riverinbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"runtime"
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

// Benchmarks, figures in BENCHMARKS.md:
//
//	go test -run '^$' -bench . -benchtime 5000x -count 5 ./... | tee new.txt
//
// BenchmarkAccept: deliveries a Handler accepts per second, each a signed
// request through ServeHTTP from 16 goroutines, into the River inbox
// ("inbox") or into a baseline Inbox that INSERTs the same payload with one
// statement per request ("baseline": insert ... on conflict do nothing, a
// primary key on the idempotency key), through the same pool.
//
// BenchmarkWork: inbox jobs the workers complete per second, each running a
// callback that writes one row in the worker's transaction.

const benchSenders = 16

// acceptParallelism gives RunParallel benchSenders goroutines.
func acceptParallelism() int {
	p := benchSenders / max(1, runtime.GOMAXPROCS(0))
	return max(1, p)
}

func BenchmarkAccept(b *testing.B) {
	// Each run gets a fresh database, so that neither variant inherits a
	// grown table, index or write-ahead log from the other.
	pgPool := func(b *testing.B) *pgxpool.Pool {
		pool := newPool(b, newPostgresDatabase(b), benchSenders)
		if _, err := pool.Exec(context.Background(), `create table baseline_inbox (key text primary key, id text not null, ts timestamptz not null, event_id text, payload bytea not null)`); err != nil {
			b.Fatal(err)
		}
		return pool
	}
	sqliteDB := func(b *testing.B) *sql.DB {
		db := newSQLiteDB(b)
		if _, err := db.Exec(`create table baseline_inbox (key text primary key, id text not null, ts text not null, event_id text, payload blob not null)`); err != nil {
			b.Fatal(err)
		}
		return db
	}
	b.Run("postgres/inbox", func(b *testing.B) {
		client, err := river.NewClient(riverpgxv5.New(pgPool(b)), &river.Config{Logger: quietLogger(b)})
		if err != nil {
			b.Fatal(err)
		}
		benchAccept(b, riverinbox.New(client))
	})
	b.Run("postgres/baseline", func(b *testing.B) { benchAccept(b, &pgBaseline{pool: pgPool(b)}) })
	b.Run("sqlite/inbox", func(b *testing.B) {
		client, err := river.NewClient(riversqlite.New(sqliteDB(b)), &river.Config{Logger: quietLogger(b)})
		if err != nil {
			b.Fatal(err)
		}
		benchAccept(b, riverinbox.New(client))
	})
	b.Run("sqlite/baseline", func(b *testing.B) { benchAccept(b, &sqliteBaseline{db: sqliteDB(b)}) })
}

type pgBaseline struct{ pool *pgxpool.Pool }

func (p *pgBaseline) Enqueue(ctx context.Context, d tlwebhook.Delivery, payload []byte) error {
	_, err := p.pool.Exec(ctx, `insert into baseline_inbox (key, id, ts, event_id, payload) values ($1, $2, $3, $4, $5) on conflict (key) do nothing`,
		d.IdempotencyKey(), d.ID, d.Timestamp, d.EventID, payload)
	return err
}

type sqliteBaseline struct{ db *sql.DB }

func (s *sqliteBaseline) Enqueue(ctx context.Context, d tlwebhook.Delivery, payload []byte) error {
	_, err := s.db.ExecContext(ctx, `insert into baseline_inbox (key, id, ts, event_id, payload) values (?, ?, ?, ?, ?) on conflict (key) do nothing`,
		d.IdempotencyKey(), d.ID, d.Timestamp.UTC().Format(time.RFC3339Nano), d.EventID, payload)
	return err
}

var benchSeq atomic.Int64

func benchAccept(b *testing.B, ib tlwebhook.Inbox) {
	secret := tlwebhooktest.NewSecret()
	signer, _ := tlwebhooktest.NewSigner(secret)
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithInbox(ib), tlwebhook.WithLogger(quietHandlerLogger(b)))
	if err != nil {
		b.Fatal(err)
	}
	run := fmt.Sprintf("%d", benchSeq.Add(1))
	var seq atomic.Int64
	b.SetParallelism(acceptParallelism())
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			body := sandboxPayload(fmt.Sprintf("evt_bench_%s_%d", run, i))
			if got := serveWith(h, signer, tlwebhooktest.NewMessageID(), body); got != http.StatusNoContent {
				b.Errorf("status %d", got)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}

func BenchmarkWork(b *testing.B) {
	b.Run("postgres", func(b *testing.B) {
		be := postgresBackendPool(newPool(b, newPostgresDatabase(b), 24))
		benchWork(b, be, 16)
	})
	b.Run("sqlite", func(b *testing.B) {
		benchWork(b, sqliteBackend(b), 4)
	})
}

func benchWork[TTx any](b *testing.B, be *backend[TTx], maxWorkers int) {
	s := newSetup(b, be, maxWorkers, registerEffects(be, nil))
	ctx := context.Background()
	// Fill the inbox first, through the Handler.
	for i := range b.N {
		if got := s.serve(tlwebhooktest.NewMessageID(), sandboxPayload(fmt.Sprintf("evt_work_%d", i))); got != http.StatusNoContent {
			b.Fatalf("status %d", got)
		}
	}
	done, cancel := s.client.Subscribe(river.EventKindJobCompleted)
	defer cancel()
	b.ResetTimer()
	if err := s.client.Start(ctx); err != nil {
		b.Fatal(err)
	}
	timeout := time.After(5 * time.Minute)
	for range b.N {
		select {
		case <-done:
		case <-timeout:
			b.Fatal("workers did not complete the jobs in 5 minutes")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	_ = s.client.Stop(sctx)
}
