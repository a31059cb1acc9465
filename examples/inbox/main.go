// Command inbox is a Tensorlake webhook receiver with a durable inbox
// (package github.com/tlwebhook/tlwebhook/riverinbox): each verified
// delivery is committed to River's job table before the answer 204, and
// River's workers run the callbacks, whose database writes commit together
// with the job's completion, once.
//
// By default it keeps everything in a SQLite file in a new temporary
// directory, with no set-up:
//
//	go run ./examples/inbox -secret whsec_...
//
// With PostgreSQL, give its URL with -database-url or DATABASE_URL:
//
//	DATABASE_URL=postgres://localhost/app go run ./examples/inbox -secret whsec_...
//
// It creates River's tables (River's migrations, as `river migrate-up`
// would) and its own table, then listens on -addr at -path. Without
// -secret (or TLWEBHOOK_SECRET) it makes up a secret and prints it, for
// trying it out with `tlwebhook send`. Callbacks record the document
// ingestion jobs that completed in the table parsed_jobs.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/riverinbox"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "inbox:", err)
		os.Exit(1)
	}
}

// run parses args, serves until ctx ends, then stops gracefully.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("inbox", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	path := fs.String("path", "/webhooks/tensorlake", "URL path of the webhook endpoint")
	secret := fs.String("secret", os.Getenv("TLWEBHOOK_SECRET"), "endpoint secret (whsec_...); default $TLWEBHOOK_SECRET, else a new one")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL; default $DATABASE_URL, else SQLite")
	sqlitePath := fs.String("sqlite", "", "SQLite database file (default: in a new temporary directory)")
	workers := fs.Int("workers", 10, "jobs worked at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		*secret = tlwebhooktest.NewSecret()
		fmt.Fprintf(stdout, "secret: %s\n", *secret)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer l.Close()
	srv := server{listener: l, path: *path, secret: *secret, workers: *workers, logger: logger, stdout: stdout}

	if *dbURL != "" {
		cfg, err := pgxpool.ParseConfig(*dbURL)
		if err != nil {
			return fmt.Errorf("database URL: %w", err)
		}
		// One connection per running job, plus River's own and the inserts'.
		cfg.MaxConns = int32(*workers + 8)
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer pool.Close()
		fmt.Fprintln(stdout, "database: PostgreSQL")
		createTable := func(ctx context.Context) error {
			_, err := pool.Exec(ctx, `create table if not exists parsed_jobs (job_id text primary key, pages bigint not null, delivery_id text not null)`)
			return err
		}
		return serve(ctx, srv, riverpgxv5.New(pool), createTable,
			func(ctx context.Context, tx pgx.Tx, q string, args ...any) error {
				_, err := tx.Exec(ctx, q, args...)
				return err
			}, "$1, $2, $3")
	}

	if *sqlitePath == "" {
		dir, err := os.MkdirTemp("", "tlwebhook-inbox-")
		if err != nil {
			return err
		}
		*sqlitePath = filepath.Join(dir, "inbox.sqlite")
	}
	db, err := sql.Open("sqlite", sqliteDSN(*sqlitePath))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // as River recommends for SQLite
	fmt.Fprintf(stdout, "database: SQLite %s\n", *sqlitePath)
	createTable := func(ctx context.Context) error {
		_, err := db.ExecContext(ctx, `create table if not exists parsed_jobs (job_id text primary key, pages integer not null, delivery_id text not null)`)
		return err
	}
	return serve(ctx, srv, riversqlite.New(db), createTable,
		func(ctx context.Context, tx *sql.Tx, q string, args ...any) error {
			_, err := tx.ExecContext(ctx, q, args...)
			return err
		}, "?, ?, ?")
}

// sqliteDSN opens path with WAL (readers do not wait for the writer),
// synchronous=FULL (a commit, and so a 204, survives a power cut) and a busy
// timeout instead of immediate "database is locked" errors.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
}

type server struct {
	listener net.Listener
	path     string
	secret   string
	workers  int
	logger   *slog.Logger
	stdout   io.Writer
}

// serve migrates the database, then runs the receiver on one River client
// that both inserts (for the Handler's inbox) and works the jobs.
func serve[TTx any](ctx context.Context, s server, driver riverdriver.Driver[TTx], createTable func(context.Context) error,
	exec func(ctx context.Context, tx TTx, q string, args ...any) error, placeholders string) error {
	migrator, err := rivermigrate.New(driver, nil)
	if err != nil {
		return err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrating River's tables: %w", err)
	}
	if err := createTable(ctx); err != nil {
		return fmt.Errorf("creating parsed_jobs: %w", err)
	}

	workers := river.NewWorkers()
	client, err := river.NewClient(driver, &river.Config{
		Workers: workers,
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: s.workers}},
		// Keep finished jobs as long as Svix may still send a copy.
		CompletedJobRetentionPeriod: riverinbox.MinRetention,
		CancelledJobRetentionPeriod: riverinbox.MinRetention,
		JobTimeout:                  time.Minute, // above the callback timeout
		Logger:                      s.logger,
	})
	if err != nil {
		return err
	}
	h, err := tlwebhook.NewHandler(s.secret,
		tlwebhook.WithInbox(riverinbox.New(client)),
		tlwebhook.WithCallbackTimeout(30*time.Second),
		tlwebhook.WithLogger(s.logger))
	if err != nil {
		return err
	}
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		tx, ok := riverinbox.TxFromContext[TTx](ctx)
		if !ok {
			return errors.New("not run by the inbox's worker")
		}
		d, _ := tlwebhook.DeliveryFromContext(ctx)
		// Committed with the job's completion, or not at all.
		return exec(ctx, tx, "insert into parsed_jobs (job_id, pages, delivery_id) values ("+placeholders+")",
			ev.JobID, ev.Usage.PagesParsed, d.ID)
	})
	river.AddWorker(workers, riverinbox.NewWorker[TTx](h))
	if err := client.Start(ctx); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("POST "+s.path, h)
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(s.listener) }()
	fmt.Fprintf(s.stdout, "listening on http://%s%s\n", s.listener.Addr(), s.path)

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = httpSrv.Shutdown(sctx)
	return errors.Join(err, client.Stop(sctx))
}
