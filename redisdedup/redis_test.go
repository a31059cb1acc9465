package redisdedup_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook/redisdedup"
)

// These tests need a real Redis. With TLWEBHOOK_REDIS_ADDR set, they use
// the Redis there (any Redis you may write to: they only touch keys under
// random prefixes and delete them afterwards). Without it, they start a
// redis-server of their own on a free port of 127.0.0.1, without
// persistence, and stop it when they end. When neither is possible they are
// skipped, saying why once for the package (see TestMain), unless CI is
// true: there a missing Redis fails them. `. .ci/redis.sh` installs
// redis-server if missing.

// testRedis is the Redis of this test binary, found or started once.
var testRedis redisServer

type redisServer struct {
	once sync.Once
	addr string
	why  string       // why there is none, when addr is ""
	cmd  *exec.Cmd    // the redis-server started, if any
	done <-chan error // tells when cmd has exited
	dir  string
}

// redisAddr returns the address of the test Redis. Without one, the test is
// skipped, unless CI is set to true: there a missing Redis is a failure.
func redisAddr(tb testing.TB) string {
	tb.Helper()
	logToTest(tb)
	testRedis.once.Do(testRedis.find)
	if testRedis.addr == "" {
		redisUnavailable(tb, testRedis.why)
	}
	return testRedis.addr
}

func (s *redisServer) find() {
	if addr := os.Getenv("TLWEBHOOK_REDIS_ADDR"); addr != "" {
		if err := ping(addr); err != nil {
			s.why = fmt.Sprintf("no Redis answers at TLWEBHOOK_REDIS_ADDR=%s: %v", addr, err)
			return
		}
		s.addr = addr
		return
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.why = "TLWEBHOOK_REDIS_ADDR is not set and redis-server is not installed"
		return
	}
	if err := s.start(bin); err != nil {
		s.why = fmt.Sprintf("TLWEBHOOK_REDIS_ADDR is not set and %s could not be started: %v", bin, err)
	}
}

// start runs bin on a free port, retrying with another port should the
// one found be taken meanwhile, and waits until it answers PING.
func (s *redisServer) start(bin string) error {
	dir, err := os.MkdirTemp("", "tlwebhook-redis-test-")
	if err != nil {
		return err
	}
	s.dir = dir
	var errs []error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", "")
		// Should this process die without stopping it, the kernel ends
		// the server too.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		exited := make(chan error, 1)
		go func() {
			// Keep reading the log so that the server never blocks on
			// a full pipe; the last lines explain an early exit.
			var tail []string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if tail = append(tail, sc.Text()); len(tail) > 5 {
					tail = tail[1:]
				}
			}
			err := cmd.Wait()
			exited <- fmt.Errorf("redis-server exited (%v): %s", err, strings.Join(tail, " | "))
		}()
		if err := waitReady(addr, exited); err != nil {
			_ = cmd.Process.Kill() // if it is still running
			errs = append(errs, err)
			continue
		}
		s.addr, s.cmd, s.done = addr, cmd, exited
		return nil
	}
	return errors.Join(errs...)
}

// waitReady waits until a Redis answers PING at addr, for at most 10
// seconds, or until the server exits.
func waitReady(addr string, exited <-chan error) error {
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-exited:
			return err
		case <-deadline:
			return fmt.Errorf("no PONG from %s within 10s", addr)
		case <-time.After(20 * time.Millisecond):
			if ping(addr) == nil {
				return nil
			}
		}
	}
}

func (s *redisServer) stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

func ping(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func redisUnavailable(tb testing.TB, why string) {
	tb.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		tb.Fatalf("%s; CI=true requires a real Redis: install redis-server (`. .ci/redis.sh` does) or set TLWEBHOOK_REDIS_ADDR=host:port", why)
	}
	tb.Skipf("%s; to run the Redis tests, install redis-server (`. .ci/redis.sh` from the repository root does, and starts one) or set TLWEBHOOK_REDIS_ADDR=host:port", why)
}

// newClient returns a client of the test Redis, closed when the test ends.
func newClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// newDedup returns a Deduplicator, failing the test on an error.
func newDedup(tb testing.TB, c redis.UniversalClient, opts ...redisdedup.Option) *redisdedup.Deduplicator {
	tb.Helper()
	d, err := redisdedup.New(c, opts...)
	require.NoError(tb, err)
	return d
}

// downClient returns a client of a Redis that cannot be reached: its address
// is a port that was just free, where nothing listens. It neither retries
// nor redials for long.
func downClient(tb testing.TB) *redis.Client {
	tb.Helper()
	logToTest(tb)
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// testPrefix returns a key prefix unique to this test run, and deletes the
// keys under it when the test ends.
func testPrefix(tb testing.TB, c *redis.Client) string {
	tb.Helper()
	var raw [6]byte
	_, _ = rand.Read(raw[:])
	prefix := "tlwebhook:test:" + hex.EncodeToString(raw[:]) + ":"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			_ = c.Del(ctx, keys...).Err()
		}
	})
	return prefix
}
