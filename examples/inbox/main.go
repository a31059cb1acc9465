// Command inbox is a Tensorlake webhook receiver with a durable inbox
// (package github.com/tlwebhook/tlwebhook/riverinbox): each verified
// delivery is committed to River's job table before the answer 204, and
// River's workers run the callbacks, whose database writes commit together
// with the job's completion, once.
//
// By default it keeps everything in the SQLite file inbox.sqlite in the
// working directory, so that a restart resumes where it stopped:
//
//	TENSORLAKE_WEBHOOK_SECRET=whsec_... go run ./examples/inbox
//
// With PostgreSQL, give its URL with -database-url or DATABASE_URL:
//
//	DATABASE_URL=postgres://localhost/app TENSORLAKE_WEBHOOK_SECRET=whsec_... go run ./examples/inbox
//
// It creates River's tables (River's migrations, as `river migrate-up`
// would) and its own table, then listens on -addr at -path. The callback
// records the document ingestion jobs that completed in the table
// parsed_jobs, idempotently, and each processed delivery is logged on one
// INFO line.
//
// With -ui ADDR it also serves River UI (riverqueue.com/riverui) on ADDR, a
// listener of its own, behind HTTP Basic authentication: user admin, the
// password from TLWEBHOOK_UI_PASSWORD. There an operator sees every
// delivery (message id, event type, event id, payload) and retries the
// failed and discarded ones.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
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
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
	"riverqueue.com/riverui"
)

// Environment variables read by the example.
const (
	envSecret      = "TENSORLAKE_WEBHOOK_SECRET"
	envDatabaseURL = "DATABASE_URL"
	envUIPassword  = "TLWEBHOOK_UI_PASSWORD"
)

// uiUser is River UI's Basic authentication user name.
const uiUser = "admin"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return // -h: the usage went to stderr; asking for help is no failure
	case err != nil:
		fmt.Fprintln(os.Stderr, "inbox:", err)
		os.Exit(1)
	}
}

// config is what the command line and the environment say.
type config struct {
	addr, path, secret   string
	dbURL, sqlitePath    string
	uiAddr, uiPassword   string
	workers              int
	callbackTimeout      time.Duration
	logger               *slog.Logger
	stdout               io.Writer
	listener, uiListener net.Listener
}

// run parses args, serves until ctx ends, then stops gracefully. It writes
// the addresses it serves on to stdout and its logs to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := config{stdout: stdout}
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "address the webhook endpoint listens on")
	fs.StringVar(&c.path, "path", "/webhooks/tensorlake", "URL path of the webhook endpoint")
	fs.StringVar(&c.dbURL, "database-url", getenv(envDatabaseURL), "PostgreSQL URL; default $"+envDatabaseURL+", else SQLite")
	fs.StringVar(&c.sqlitePath, "sqlite", "inbox.sqlite", "SQLite database file, when there is no PostgreSQL URL")
	temp := fs.Bool("temp", false, "use a new SQLite database in a temporary directory instead of -sqlite")
	fs.StringVar(&c.uiAddr, "ui", "", "serve River UI on this address (its own listener), as user "+uiUser+" with the password $"+envUIPassword)
	fs.IntVar(&c.workers, "workers", 10, "jobs worked at once")
	fs.DurationVar(&c.callbackTimeout, "callback-timeout", tlwebhook.DefaultCallbackTimeout, "deadline of each callback; River's job timeout and stuck-job rescue follow from it")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: inbox [flags]\n\nA Tensorlake webhook receiver with a durable inbox on River. The endpoint secret\ncomes from $%s.\n\nFlags:\n", envSecret)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}
	c.secret = getenv(envSecret)
	if c.secret == "" {
		return fmt.Errorf("set %s to the endpoint's signing secret (whsec_...; `tlwebhook secret` makes one for trying it out)", envSecret)
	}
	if c.uiAddr != "" {
		c.uiPassword = getenv(envUIPassword)
		if c.uiPassword == "" {
			return fmt.Errorf("-ui serves every delivery's payload and lets its user retry and delete jobs: set %s to the password of its user %s", envUIPassword, uiUser)
		}
	}
	if c.callbackTimeout <= 0 {
		return errors.New("-callback-timeout must be positive: it bounds how long a delivery whose worker died waits to run again")
	}
	c.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	var err error
	if c.listener, err = net.Listen("tcp", c.addr); err != nil {
		return err
	}
	defer c.listener.Close()
	if c.uiAddr != "" {
		if c.uiListener, err = net.Listen("tcp", c.uiAddr); err != nil {
			return err
		}
		defer c.uiListener.Close()
	}

	if c.dbURL != "" {
		pcfg, err := pgxpool.ParseConfig(c.dbURL)
		if err != nil {
			return fmt.Errorf("database URL: %w", err)
		}
		// One connection per running job, plus River's own, the inserts' and
		// River UI's.
		pcfg.MaxConns = int32(c.workers + 8)
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			return err
		}
		defer pool.Close()
		fmt.Fprintln(stdout, "database: PostgreSQL")
		return serve(ctx, c, riverpgxv5.New(pool), postgresSQL,
			func(ctx context.Context, q string) error {
				_, err := pool.Exec(ctx, q)
				return err
			},
			func(ctx context.Context, tx pgx.Tx, q string, args ...any) error {
				_, err := tx.Exec(ctx, q, args...)
				return err
			})
	}

	if *temp {
		dir, err := os.MkdirTemp("", "tlwebhook-inbox-")
		if err != nil {
			return err
		}
		c.sqlitePath = filepath.Join(dir, "inbox.sqlite")
	}
	db, err := sql.Open("sqlite", sqliteDSN(c.sqlitePath))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // as River recommends for SQLite
	fmt.Fprintf(stdout, "database: SQLite %s\n", c.sqlitePath)
	return serve(ctx, c, riversqlite.New(db), sqliteSQL,
		func(ctx context.Context, q string) error {
			_, err := db.ExecContext(ctx, q)
			return err
		},
		func(ctx context.Context, tx *sql.Tx, q string, args ...any) error {
			_, err := tx.ExecContext(ctx, q, args...)
			return err
		})
}

// sqliteDSN opens path with WAL (readers do not wait for the writer),
// synchronous=FULL (a commit, and so a 204, survives a power cut) and a busy
// timeout instead of immediate "database is locked" errors.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
}

// statements are the example's own SQL, per database.
type statements struct {
	createTable, insertParsed string
}

// The callback's insert is idempotent: a second message about the same
// completed job (Tensorlake may send one, with a new message id) changes
// nothing instead of failing on the primary key, and River's retries of a
// job whose effect was committed find it done.
var (
	postgresSQL = statements{
		createTable:  `create table if not exists parsed_jobs (job_id text primary key, pages bigint not null, delivery_id text not null)`,
		insertParsed: `insert into parsed_jobs (job_id, pages, delivery_id) values ($1, $2, $3) on conflict (job_id) do nothing`,
	}
	sqliteSQL = statements{
		createTable:  `create table if not exists parsed_jobs (job_id text primary key, pages integer not null, delivery_id text not null)`,
		insertParsed: `insert into parsed_jobs (job_id, pages, delivery_id) values (?, ?, ?) on conflict (job_id) do nothing`,
	}
)

// testHookCallback, when set (by this package's tests only), runs in each
// callback after its write and before it returns.
var testHookCallback func(ctx context.Context, ev *tlwebhook.JobCompleted) error

// serve migrates the database, then runs the receiver on one River client
// that both inserts (for the Handler's inbox) and works the jobs, and River
// UI when asked.
func serve[TTx any](ctx context.Context, c config, driver riverdriver.Driver[TTx], stmts statements,
	exec func(ctx context.Context, q string) error,
	execTx func(ctx context.Context, tx TTx, q string, args ...any) error) error {
	migrator, err := rivermigrate.New(driver, nil)
	if err != nil {
		return err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrating River's tables: %w", err)
	}
	if err := exec(ctx, stmts.createTable); err != nil {
		return fmt.Errorf("creating parsed_jobs: %w", err)
	}

	// A job runs a little longer than its callback; one still running
	// after that is stuck because its process died, and River runs it
	// again at its next rescue instead of after an hour.
	jobTimeout, rescueAfter := riverinbox.Timeouts(c.callbackTimeout)
	workers := river.NewWorkers()
	client, err := river.NewClient(driver, &river.Config{
		Workers: workers,
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: c.workers}},
		// Keep finished jobs as long as Svix may still send a copy.
		CompletedJobRetentionPeriod: riverinbox.MinRetention,
		CancelledJobRetentionPeriod: riverinbox.MinRetention,
		JobTimeout:                  jobTimeout,
		RescueStuckJobsAfter:        rescueAfter,
		Logger:                      c.logger,
	})
	if err != nil {
		return err
	}
	h, err := tlwebhook.NewHandler(c.secret,
		tlwebhook.WithInbox(riverinbox.New(client)),
		tlwebhook.WithCallbackTimeout(c.callbackTimeout),
		tlwebhook.WithObserver(logOutcomes{c.logger}),
		tlwebhook.WithLogger(c.logger))
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
		if err := execTx(ctx, tx, stmts.insertParsed, ev.JobID, ev.Usage.PagesParsed, d.ID); err != nil {
			return err
		}
		if testHookCallback != nil {
			return testHookCallback(ctx, ev)
		}
		return nil
	})
	river.AddWorker(workers, riverinbox.NewWorker[TTx](h))
	if err := client.Start(ctx); err != nil {
		return err
	}

	servers := []*http.Server{}
	errc := make(chan error, 2)
	mux := http.NewServeMux()
	mux.Handle("POST "+c.path, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	servers = append(servers, srv)
	go func() { errc <- srv.Serve(c.listener) }()
	fmt.Fprintf(c.stdout, "listening on http://%s%s\n", c.listener.Addr(), c.path)

	if c.uiListener != nil {
		ui, err := riverui.NewHandler(&riverui.HandlerOpts{
			Endpoints: riverui.NewEndpoints(client, nil),
			Logger:    c.logger,
			Prefix:    "/",
		})
		if err != nil {
			return err
		}
		if err := ui.Start(ctx); err != nil {
			return err
		}
		uiSrv := &http.Server{Handler: basicAuth(uiUser, c.uiPassword, ui), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, uiSrv)
		go func() { errc <- uiSrv.Serve(c.uiListener) }()
		fmt.Fprintf(c.stdout, "River UI on http://%s/ (user %s)\n", c.uiListener.Addr(), uiUser)
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var errs []error
	for _, s := range servers {
		errs = append(errs, s.Shutdown(sctx))
	}
	return errors.Join(append(errs, client.Stop(sctx))...)
}

// basicAuth lets through requests that carry user and password in HTTP
// Basic authentication, compared in constant time, and answers others 401
// with a challenge, so that a browser asks for them.
func basicAuth(user, password string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(user + ":" + password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		got := sha256.Sum256([]byte(u + ":" + p))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="River UI", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// logOutcomes is the example's Observer: one INFO line per processed
// delivery, one ERROR line per delivery the inbox gave up on. (The Handler
// logs failed attempts itself.)
type logOutcomes struct{ logger *slog.Logger }

func (l logOutcomes) Observe(ctx context.Context, o tlwebhook.Observation) {
	attrs := []slog.Attr{slog.String("delivery_id", o.Delivery.ID), slog.String("event_type", string(o.EventType))}
	if o.Delivery.EventID != "" {
		attrs = append(attrs, slog.String("event_id", o.Delivery.EventID))
	}
	switch {
	case o.Outcome == tlwebhook.DeliveryProcessed && o.Status == 0: // run by the worker
		attrs = append(attrs, slog.Duration("duration", o.Duration))
		l.logger.LogAttrs(ctx, slog.LevelInfo, "delivery processed", attrs...)
	case o.Outcome == tlwebhook.DeliveryDiscarded:
		attrs = append(attrs, slog.String("error", o.Err.Error()))
		l.logger.LogAttrs(ctx, slog.LevelError, "delivery discarded: retry it from River UI once the cause is fixed", attrs...)
	}
}
