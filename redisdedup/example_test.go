package redisdedup_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/redisdedup"
)

// Every replica of a service builds its Handler over the same Redis; each
// Tensorlake event then reaches the callback once, whichever replica Svix's
// copies land on.
func Example() {
	client := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer client.Close()

	dedup, err := redisdedup.New(client)
	if err != nil {
		log.Fatal(err)
	}
	h, err := tlwebhook.NewHandler(os.Getenv("TENSORLAKE_WEBHOOK_SECRET"), tlwebhook.WithDeduplicator(dedup))
	if err != nil {
		log.Fatal(err)
	}
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		// Runs once per job across all replicas. Should the process die
		// before the handler records the success, the retry runs it again:
		// keep side effects idempotent.
		log.Printf("job %s parsed %d pages", ev.JobID, ev.Usage.PagesParsed)
		return nil
	})
	http.Handle("POST /webhooks/tensorlake", h)
	log.Fatal(http.ListenAndServe(":8080", nil))
}

// With a Redis shared by several applications, give each its own prefix.
func ExampleWithPrefix() {
	client := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer client.Close()
	dedup, err := redisdedup.New(client, redisdedup.WithPrefix("billing:tlwebhook:"))
	if err != nil {
		log.Fatal(err)
	}
	_ = dedup // give it to tlwebhook.WithDeduplicator
}

// A lease shorter than the default makes a crashed replica's claim expire
// sooner. While a callback runs, the Handler renews its claim every third
// of the lease, so the lease limits how long a crash delays the retry, not
// how long a callback may run. It must be at least three read timeouts of
// the client, so that a renewal can wait one out and still be in time.
func ExampleWithLease() {
	client := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR"), ReadTimeout: time.Second})
	defer client.Close()
	dedup, err := redisdedup.New(client, redisdedup.WithLease(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	_ = dedup // give it to tlwebhook.WithDeduplicator
}
