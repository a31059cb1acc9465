package frameworks_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/examples/frameworks"
)

// A chi router serving the webhook handler; the other routers are used the
// same way.
func ExampleChi() {
	h, err := tlwebhook.NewHandler(os.Getenv("TENSORLAKE_WEBHOOK_SECRET"))
	if err != nil {
		log.Fatal(err)
	}
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		log.Printf("job %s completed", ev.JobID)
		return nil
	})
	srv := &http.Server{Addr: ":8080", Handler: frameworks.Chi(h), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
