package redisdedup_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// These tests need a real redis-server. Start one with
//
//	. .ci/redis.sh
//
// from the repository root (it exports TLWEBHOOK_REDIS_ADDR), or point
// TLWEBHOOK_REDIS_ADDR at any Redis you may write to: the tests only touch
// keys under a random prefix and delete them afterwards.

// redisAddr returns the address of the test Redis. Without one, the test is
// skipped, unless CI is set to true: there a missing Redis is a failure.
func redisAddr(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("TLWEBHOOK_REDIS_ADDR")
	if addr == "" {
		redisUnavailable(tb, "TLWEBHOOK_REDIS_ADDR is not set")
	}
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		redisUnavailable(tb, fmt.Sprintf("no Redis answers at TLWEBHOOK_REDIS_ADDR=%s: %v", addr, err))
	}
	return addr
}

func redisUnavailable(tb testing.TB, why string) {
	tb.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		tb.Fatalf("%s; CI=true requires a real Redis (source .ci/redis.sh before the tests)", why)
	}
	tb.Skipf("%s; to run the Redis tests, start one with `. .ci/redis.sh` from the repository root, or set TLWEBHOOK_REDIS_ADDR=host:port", why)
}

// newClient returns a client of the test Redis, closed when the test ends.
func newClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// downClient returns a client of a Redis that cannot be reached: its address
// is a port that was just free, where nothing listens. It neither retries
// nor redials for long.
func downClient(tb testing.TB) *redis.Client {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
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
