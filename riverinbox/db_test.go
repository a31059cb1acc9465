package riverinbox_test

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tlwebhook/tlwebhook/riverinbox/riverinboxtest"
)

// The PostgreSQL tests need a real server; riverinboxtest finds or starts
// one (see its package documentation), and skips them with a notice when
// there is none, or fails them when CI=true. SQLite needs nothing: each test
// gets a database file in t.TempDir().

const envReceiver = "TLWEBHOOK_RIVERINBOX_RECEIVER"

func TestMain(m *testing.M) {
	if os.Getenv(envReceiver) != "" {
		os.Exit(receiverMain())
	}
	os.Exit(riverinboxtest.Main(m))
}

// newPostgresDatabase creates a fresh database with River's tables and the
// effects table, and returns its URL; the database is dropped when the test
// ends.
func newPostgresDatabase(tb testing.TB) string {
	tb.Helper()
	dbURL := riverinboxtest.PostgresDatabase(tb)
	pool := newPool(tb, dbURL, 2)
	if _, err := pool.Exec(context.Background(), effectsTablePostgres); err != nil {
		tb.Fatal(err)
	}
	return dbURL
}

// effectsTablePostgres is where the tests' callbacks record their effect:
// one row per committed run, deliberately without a unique constraint, so
// that a doubled effect shows as two rows instead of an error.
const effectsTablePostgres = `create table effects (
	key text not null,
	delivery_id text not null,
	pid int not null,
	at timestamptz not null default now()
)`

const effectsTableSQLite = `create table effects (
	key text not null,
	delivery_id text not null,
	pid int not null,
	at text not null default current_timestamp
)`

// newPool returns a pgx pool of at most maxConns connections, closed when
// the test ends.
func newPool(tb testing.TB, dbURL string, maxConns int32) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// newSQLiteDB returns a fresh SQLite database in a temporary directory, with
// River's tables and the effects table, as a pool of one connection as River
// recommends.
func newSQLiteDB(tb testing.TB) *sql.DB {
	tb.Helper()
	db := riverinboxtest.SQLiteDatabase(tb)
	if _, err := db.ExecContext(context.Background(), effectsTableSQLite); err != nil {
		tb.Fatal(err)
	}
	return db
}

// quietLogger is River's logger in tests: warnings and errors (failed
// attempts are expected in these tests) go to the test's log, shown when it
// fails.
func quietLogger(tb testing.TB) *slog.Logger { return riverinboxtest.Logger(tb, slog.LevelWarn) }

// quietHandlerLogger is the Handler's logger in tests, likewise.
func quietHandlerLogger(tb testing.TB) *slog.Logger { return riverinboxtest.Logger(tb, slog.LevelWarn) }

func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}
