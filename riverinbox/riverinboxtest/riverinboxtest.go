// Package riverinboxtest helps test programs built on riverinbox against
// real databases: a throwaway PostgreSQL server and fresh databases with
// River's tables, SQLite databases, and a River logger that writes to the
// test's log.
//
// A package whose tests use PostgreSQL calls [Main] from its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(riverinboxtest.Main(m)) }
//
// and each test gets a database of its own:
//
//	pool, err := pgxpool.New(ctx, riverinboxtest.PostgresDatabase(t))
//
// The server is found, in order of preference: TLWEBHOOK_DATABASE_URL names
// one (the repository's .ci/postgres.sh starts one and exports it); else,
// when Debian's PostgreSQL server is installed (/usr/lib/postgresql/*/bin),
// Main starts one of its own in a temporary directory, on a free loopback
// port, and stops it after the tests; else the tests that need it are
// skipped, and Main says so once, on the go command's output, so that the
// skip shows without -v. With CI=true they fail instead of skipping.
package riverinboxtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// EnvDatabaseURL names a PostgreSQL server the tests may create databases
// on, as an administrator URL.
const EnvDatabaseURL = "TLWEBHOOK_DATABASE_URL"

// server is the PostgreSQL server of this test binary, set up by Main.
var server struct {
	mu   sync.Mutex
	set  bool   // Main ran
	url  string // admin URL; "" when there is none
	why  string // why there is none
	stop func()
}

// Main finds or starts the PostgreSQL server for the tests of m, runs them,
// stops a server it started, and returns the exit code for os.Exit. When
// there is no server, it says why once, on the go command's output (a
// passing package's own output shows only with -v).
func Main(m *testing.M) int {
	setUp()
	code := m.Run()
	server.mu.Lock()
	stop := server.stop
	server.mu.Unlock()
	if stop != nil {
		stop()
	}
	return code
}

func setUp() {
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.set {
		return
	}
	server.set = true
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		if err := ping(u); err != nil {
			server.why = fmt.Sprintf("no PostgreSQL answers at %s: %v", EnvDatabaseURL, err)
		} else {
			server.url = u
		}
	} else if bin := binDir(); bin == "" {
		server.why = EnvDatabaseURL + " is not set and no PostgreSQL server is installed under /usr/lib/postgresql/*/bin"
	} else if u, stop, err := start(bin); err != nil {
		server.why = fmt.Sprintf("starting PostgreSQL from %s: %v", bin, err)
	} else {
		server.url, server.stop = u, stop
	}
	if server.url == "" && !inCI() {
		Notice(fmt.Sprintf("%s: PostgreSQL tests skipped: %s (install the Debian package postgresql, or set %s)",
			filepath.Base(os.Args[0]), server.why, EnvDatabaseURL))
	}
}

// Notice writes msg where the person running go test sees it, for example
// that some tests of the package are skipped because a tool is missing: on
// the standard error of the go command that started this test binary (its
// parent), which shows it even when the package passes (go test shows a
// passing package's own output only with -v), or else on this process's
// standard error. Call it once per test binary, from TestMain.
func Notice(msg string) {
	if f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/2", os.Getppid()), os.O_WRONLY|os.O_APPEND, 0); err == nil {
		_, _ = fmt.Fprintln(f, msg)
		_ = f.Close()
		return
	}
	fmt.Fprintln(os.Stderr, msg)
}

func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// AdminURL returns the URL of the test binary's PostgreSQL server, to
// connect as its administrator; it skips tb (fails it when CI=true) when
// there is none.
func AdminURL(tb testing.TB) string {
	tb.Helper()
	setUp()
	if server.url == "" {
		if inCI() {
			tb.Fatalf("%s; CI=true requires a real PostgreSQL (source .ci/postgres.sh before the tests, or install postgresql)", server.why)
		}
		tb.Skipf("%s; install the Debian postgresql package, or set %s", server.why, EnvDatabaseURL)
	}
	return server.url
}

// PostgresDatabase creates a fresh database with River's tables on the test
// binary's server and returns its URL; the database is dropped when tb ends.
// Without a server it skips tb, or fails it when CI=true.
func PostgresDatabase(tb testing.TB) string {
	tb.Helper()
	admin := AdminURL(tb)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	name := "riverinbox_" + strings.ToLower(rand.Text()[:12])
	if _, err := conn.Exec(ctx, "create database "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			tb.Errorf("dropping test database: %v", err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "drop database if exists "+name+" with (force)"); err != nil {
			tb.Errorf("dropping test database: %v", err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	dbURL := u.String()

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer pool.Close()
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		tb.Fatalf("migrating: %v", err)
	}
	return dbURL
}

// SQLiteDSN is a data source name for the modernc.org/sqlite driver that
// suits River: WAL, so that readers do not wait for the writer;
// synchronous=FULL, so that a commit (and so a 204) survives a power loss;
// immediate transactions and a busy timeout instead of "database is locked"
// errors.
func SQLiteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
}

// SQLiteDatabase returns a fresh SQLite database in tb's temporary
// directory, with River's tables, as a pool of one connection as River
// recommends; it is closed when tb ends.
func SQLiteDatabase(tb testing.TB) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", SQLiteDSN(filepath.Join(tb.TempDir(), "inbox.sqlite")))
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	tb.Cleanup(func() { _ = db.Close() })
	migrator, err := rivermigrate.New(riversqlite.New(db), nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := migrator.Migrate(context.Background(), rivermigrate.DirectionUp, nil); err != nil {
		tb.Fatalf("migrating: %v", err)
	}
	return db
}

// Logger returns a logger for River clients and Handlers under test that
// writes records at level or above to tb's log, shown only when tb fails or
// with -v, so that a passing run stays quiet. Records logged after tb ended
// (by goroutines still stopping) are dropped.
func Logger(tb testing.TB, level slog.Level) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tbWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

var _ io.Writer = (*tbWriter)(nil)

func ping(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// binDir returns the bin directory of the newest installed server.
func binDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	major := func(dir string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return n
	}
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) < major(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

// start creates a cluster in a temporary directory and starts it on
// 127.0.0.1 on a free port. As root, the cluster belongs to the postgres
// user, since the server refuses to run as root.
func start(bin string) (string, func(), error) {
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
		for _, p := range []string{"/usr/sbin/runuser", "/sbin/runuser"} {
			if err == nil {
				break
			}
			if _, serr := os.Stat(p); serr == nil {
				runuser, err = p, nil
			}
		}
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
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			if strings.Contains(string(out), "already in use") || strings.Contains(string(log), "already in use") {
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Rows is what [ScanCounts] reads: pgx.Rows and *sql.Rows both have these
// methods.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanCounts reads rows of (text, integer), such as the result of
// "select job_id, count(*) ... group by job_id", into a map: the usual way a
// test counts the effects its callbacks committed, on PostgreSQL or SQLite.
func ScanCounts(rows Rows) (map[string]int, error) {
	m := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		m[k] = n
	}
	return m, rows.Err()
}
