package redisdedup_test

import (
	"context"
	"log"
	"net/http"
	"os"

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

	h, err := tlwebhook.NewHandler(os.Getenv("TENSORLAKE_WEBHOOK_SECRET"),
		tlwebhook.WithDeduplicator(redisdedup.New(client)))
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
	_ = redisdedup.New(client, redisdedup.WithPrefix("billing:tlwebhook:"))
}
