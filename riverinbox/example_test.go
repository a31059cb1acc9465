package riverinbox_test

import (
	"context"
	"log"
	"net/http"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/riverinbox"
)

// A receiver on PostgreSQL: the Handler answers 204 once a delivery is
// committed to River's job table; River's workers run the callback, whose
// insert commits together with the job's completion.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	// River's tables (or: river migrate-up --database-url "$DATABASE_URL").
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		log.Fatal(err)
	}

	// An insert-only client for the Handler's inbox.
	ins, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		log.Fatal(err)
	}
	h, err := tlwebhook.NewHandler(os.Getenv("TENSORLAKE_WEBHOOK_SECRET"), tlwebhook.WithInbox(riverinbox.New(ins)))
	if err != nil {
		log.Fatal(err)
	}
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		tx, _ := riverinbox.TxFromContext[pgx.Tx](ctx)
		_, err := tx.Exec(ctx, `insert into parsed (job_id) values ($1)`, ev.JobID)
		return err
	})

	// A working client runs the callbacks.
	workers := river.NewWorkers()
	river.AddWorker(workers, riverinbox.NewWorker[pgx.Tx](h))
	wc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Workers:                     workers,
		Queues:                      map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 20}},
		CompletedJobRetentionPeriod: riverinbox.MinRetention,
		CancelledJobRetentionPeriod: riverinbox.MinRetention,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := wc.Start(ctx); err != nil {
		log.Fatal(err)
	}

	http.Handle("POST /webhooks/tensorlake", h)
	log.Fatal(http.ListenAndServe(":8080", nil))
}

// The working client of a receiver whose callbacks have the Handler's
// default timeout: a job runs a little longer than its callback, and a job
// whose process died runs again within about a minute instead of an hour.
func ExampleTimeouts() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	ins, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		log.Fatal(err)
	}
	h, err := tlwebhook.NewHandler(os.Getenv("TENSORLAKE_WEBHOOK_SECRET"),
		tlwebhook.WithInbox(riverinbox.New(ins)),
		tlwebhook.WithCallbackTimeout(tlwebhook.DefaultCallbackTimeout))
	if err != nil {
		log.Fatal(err)
	}

	jobTimeout, rescueAfter := riverinbox.Timeouts(tlwebhook.DefaultCallbackTimeout)
	workers := river.NewWorkers()
	river.AddWorker(workers, riverinbox.NewWorker[pgx.Tx](h))
	wc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Workers:                     workers,
		Queues:                      map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 20}},
		CompletedJobRetentionPeriod: riverinbox.MinRetention,
		CancelledJobRetentionPeriod: riverinbox.MinRetention,
		JobTimeout:                  jobTimeout,
		RescueStuckJobsAfter:        rescueAfter,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := wc.Start(ctx); err != nil {
		log.Fatal(err)
	}
}
