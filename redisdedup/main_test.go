package redisdedup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestMain finds or starts the Redis of the tests before they run, says
// once for the package when there is none, routes go-redis's own log to the
// tests' logs, and stops the redis-server it started.
func TestMain(m *testing.M) {
	redis.SetLogger(redisLog)
	testRedis.once.Do(testRedis.find)
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); testRedis.addr == "" && !ci {
		notice("redisdedup: the tests that need Redis are skipped: " + testRedis.why +
			"; to run them, install redis-server (Debian: apt-get install redis-server) or point TLWEBHOOK_REDIS_ADDR at a Redis")
	}
	code := m.Run()
	testRedis.stop()
	redisLog.flush(code)
	os.Exit(code)
}

// notice writes msg, a line every run of the package's tests should show,
// to standard error, which go test shows with -v, for a package that
// fails, or when it runs the package in the current directory. Run on a
// list of packages (go test ./...), the go command hides everything a
// passing package printed; so msg also goes to the go command's own
// standard error (Linux only): the terminal, pipe or log of whoever ran the
// tests, once per package. A file the go command does not append to is
// left alone, since a second writer at its own offset would overwrite the
// go command's output.
func notice(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	parent := "/proc/" + strconv.Itoa(os.Getppid())
	if exe, err := os.Readlink(parent + "/exe"); err != nil || filepath.Base(exe) != "go" {
		return // not run by the go command
	}
	fi, err := os.Stat(parent + "/fd/2")
	if err != nil {
		return
	}
	if fi.Mode().IsRegular() && !appends(parent+"/fdinfo/2") {
		return
	}
	f, err := os.OpenFile(parent+"/fd/2", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	fmt.Fprintln(f, msg)
	_ = f.Close()
}

// appends reports whether the file descriptor that the fdinfo file
// describes was opened with O_APPEND.
func appends(fdinfo string) bool {
	b, err := os.ReadFile(fdinfo)
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			return err == nil && flags&syscall.O_APPEND != 0
		}
	}
	return false
}

// redisLog is go-redis's logger in these tests: what go-redis logs itself
// (pool dial failures while a test keeps Redis away, for instance) goes to
// the logs of the tests that use Redis at the time, shown only when one
// fails or with -v; with none, it is kept, and written to standard error
// should the package fail.
var redisLog = &testLogger{tests: map[testing.TB]struct{}{}}

type testLogger struct {
	mu    sync.Mutex
	tests map[testing.TB]struct{}
	kept  []string // lines logged while no test listened, the last 100
}

// logToTest makes tb a destination of go-redis's log until tb ends.
func logToTest(tb testing.TB) {
	redisLog.mu.Lock()
	defer redisLog.mu.Unlock()
	if _, ok := redisLog.tests[tb]; ok {
		return
	}
	redisLog.tests[tb] = struct{}{}
	tb.Cleanup(func() {
		redisLog.mu.Lock()
		defer redisLog.mu.Unlock()
		delete(redisLog.tests, tb)
	})
}

func (l *testLogger) Printf(_ context.Context, format string, v ...any) {
	line := "go-redis: " + fmt.Sprintf(format, v...)
	l.mu.Lock()
	defer l.mu.Unlock()
	for tb := range l.tests {
		tb.Log(line)
	}
	if len(l.tests) == 0 {
		if l.kept = append(l.kept, line); len(l.kept) > 100 {
			l.kept = l.kept[1:]
		}
	}
}

// flush writes the kept lines to standard error when the tests failed.
func (l *testLogger) flush(code int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if code != 0 && len(l.kept) > 0 {
		fmt.Fprintf(os.Stderr, "go-redis logged, outside any test:\n%s\n", strings.Join(l.kept, "\n"))
	}
	l.kept = nil
}
