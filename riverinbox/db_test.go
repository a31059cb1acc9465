package riverinbox_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// The PostgreSQL tests need a real server. In order of preference:
//
//   - TLWEBHOOK_DATABASE_URL names one (.ci/postgres.sh starts a throwaway
//     server and exports it). Each test creates its own database there and
//     drops it afterwards.
//   - Otherwise, when the Debian server binaries are installed under
//     /usr/lib/postgresql/*/bin, TestMain starts a server of its own in a
//     temporary directory on a free port, and stops it at the end.
//   - Otherwise the tests are skipped with a message, unless CI=true, where
//     they fail.
//
// SQLite needs nothing: each test gets a database file in t.TempDir().

// pg is the server the PostgreSQL tests use, set up by TestMain.
var pg struct {
	url string // admin URL; "" when there is none
	why string // why there is none
}

const envReceiver = "TLWEBHOOK_RIVERINBOX_RECEIVER"

func TestMain(m *testing.M) {
	if os.Getenv(envReceiver) != "" {
		os.Exit(receiverMain())
	}
	stop := setupPostgres()
	code := m.Run()
	stop()
	os.Exit(code)
}

func setupPostgres() (stop func()) {
	stop = func() {}
	if u := os.Getenv("TLWEBHOOK_DATABASE_URL"); u != "" {
		if err := pingPostgres(u); err != nil {
			pg.why = fmt.Sprintf("no PostgreSQL answers at TLWEBHOOK_DATABASE_URL: %v", err)
			return stop
		}
		pg.url = u
		return stop
	}
	bin := postgresBinDir()
	if bin == "" {
		pg.why = "TLWEBHOOK_DATABASE_URL is not set and no PostgreSQL server is installed under /usr/lib/postgresql/*/bin"
		return stop
	}
	u, stop, err := startPostgres(bin)
	if err != nil {
		pg.why = fmt.Sprintf("starting PostgreSQL from %s: %v", bin, err)
		return func() {}
	}
	pg.url = u
	return stop
}

func pingPostgres(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// postgresBinDir returns the bin directory of the newest installed server.
func postgresBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) < pgMajor(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// startPostgres creates a cluster in a temporary directory and starts it on
// 127.0.0.1 on a free port. As root, the cluster belongs to the postgres
// user, since the server refuses to run as root.
func startPostgres(bin string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "riverinbox-postgres-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	asOwner := func(name string, args ...string) *exec.Cmd {
		return exec.Command(filepath.Join(bin, name), args...)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			cleanup()
			return "", nil, fmt.Errorf("running as root and there is no postgres user to own the cluster: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		if err := os.Chown(dir, uid, -1); err != nil {
			cleanup()
			return "", nil, err
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			cleanup()
			return "", nil, fmt.Errorf("running as root without runuser: %w", err)
		}
		asOwner = func(name string, args ...string) *exec.Cmd {
			return exec.Command(runuser, append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asOwner("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	for range 5 {
		port, err := freePort()
		if err != nil {
			cleanup()
			return "", nil, err
		}
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=300", port, dir)
		out, err := asOwner("pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "-o", opts, "start").CombinedOutput()
		if err != nil {
			_ = asOwner("pg_ctl", "-D", data, "-m", "immediate", "stop").Run()
			if strings.Contains(string(out), "already in use") || strings.Contains(readFile(filepath.Join(dir, "server.log")), "already in use") {
				continue
			}
			cleanup()
			return "", nil, fmt.Errorf("pg_ctl start: %v: %s", err, out)
		}
		u := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
		stop := func() {
			_ = asOwner("pg_ctl", "-D", data, "-m", "fast", "stop").Run()
			cleanup()
		}
		return u, stop, nil
	}
	cleanup()
	return "", nil, errors.New("no free port found")
}

func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// postgresUnavailable skips tb, or fails it when CI=true.
func postgresUnavailable(tb testing.TB) {
	tb.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		tb.Fatalf("%s; CI=true requires a real PostgreSQL (source .ci/postgres.sh before the tests)", pg.why)
	}
	tb.Skipf("%s; to run the PostgreSQL tests, install the Debian postgresql package, or start one with `. .ci/postgres.sh` from the repository root, or set TLWEBHOOK_DATABASE_URL", pg.why)
}

// newPostgresDatabase creates a fresh database with River's tables and
// returns its URL; the database is dropped when the test ends.
func newPostgresDatabase(tb testing.TB) string {
	tb.Helper()
	if pg.url == "" {
		postgresUnavailable(tb)
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pg.url)
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close(ctx)
	name := "riverinbox_" + strings.ToLower(rand.Text()[:12])
	if _, err := admin.Exec(ctx, "create database "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), pg.url)
		if err != nil {
			tb.Errorf("dropping test database: %v", err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "drop database if exists "+name+" with (force)"); err != nil {
			tb.Errorf("dropping test database: %v", err)
		}
	})
	u, err := url.Parse(pg.url)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	dbURL := u.String()

	pool := newPool(tb, dbURL, 4)
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		tb.Fatalf("migrating: %v", err)
	}
	if _, err := pool.Exec(ctx, effectsTablePostgres); err != nil {
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

// sqliteDSN is how the tests and the example open SQLite: WAL, so that
// readers do not wait for the writer; synchronous=FULL, so that a commit
// (and so a 204) survives a power loss too; and a busy timeout instead of
// immediate SQLITE_BUSY errors.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
}

// newSQLiteDB returns a fresh SQLite database in a temporary directory, with
// River's tables, as a pool of one connection as River recommends.
func newSQLiteDB(tb testing.TB) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", sqliteDSN(filepath.Join(tb.TempDir(), "inbox.sqlite")))
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	tb.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	migrator, err := rivermigrate.New(riversqlite.New(db), nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		tb.Fatalf("migrating: %v", err)
	}
	if _, err := db.ExecContext(ctx, effectsTableSQLite); err != nil {
		tb.Fatal(err)
	}
	return db
}
