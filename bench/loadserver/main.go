// Command loadserver is the server that bench/load.sh drives with wrk. It
// serves POST /webhooks/tensorlake on loopback, either with a
// tlwebhook.Handler (-mode handler, the default) or with a bare net/http
// handler that only reads the body and answers 204 (-mode bare), so that the
// two can be compared on the same payload and connections.
//
// With -sign FILE it prints, instead of serving, the svix-* headers that
// svix's own Go library computes for FILE at the current time, as shell
// assignments for load.sh:
//
//	go run ./bench/loadserver -sign tlwebhooktest/testdata/samples/tensorlake.document_ingestion.job.completed.json
//	go run ./bench/loadserver -mode bare -addr 127.0.0.1:8089
//
// The secret comes from TLWEBHOOK_BENCH_SECRET, or is a fixed test secret.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/tlwebhook/tlwebhook"
)

const (
	envSecret     = "TLWEBHOOK_BENCH_SECRET"
	defaultSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	webhookPath   = "/webhooks/tensorlake"
	messageID     = "msg_2LhQ8hG1w1KxHh3k5mFqg0o3Zr7"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8089", "address to listen on")
	mode := flag.String("mode", "handler", "handler: tlwebhook.Handler; bare: read the body, answer 204")
	sign := flag.String("sign", "", "print svix headers for this payload file and exit")
	timeout := flag.Duration("callback-timeout", tlwebhook.DefaultCallbackTimeout, "handler mode: tlwebhook.WithCallbackTimeout (0 disables it)")
	flag.Parse()

	secret := os.Getenv(envSecret)
	if secret == "" {
		secret = defaultSecret
	}
	if *sign != "" {
		if err := printHeaders(os.Stdout, secret, *sign); err != nil {
			fmt.Fprintln(os.Stderr, "loadserver:", err)
			os.Exit(1)
		}
		return
	}
	h, err := newHandler(*mode, secret, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadserver:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *addr, h); err != nil {
		fmt.Fprintln(os.Stderr, "loadserver:", err)
		os.Exit(1)
	}
}

// printHeaders signs the payload in path with svix's library, at the
// current time.
func printHeaders(w io.Writer, secret, path string) error {
	body, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		return err
	}
	now := time.Now()
	sig, err := wh.Sign(messageID, now, body)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "LOAD_SVIX_ID=%s\nLOAD_SVIX_TIMESTAMP=%d\nLOAD_SVIX_SIGNATURE='%s'\n", messageID, now.Unix(), sig)
	return err
}

// delivered counts callbacks, so that the work is not optimised away.
var delivered atomic.Int64

func newHandler(mode, secret string, timeout time.Duration) (http.Handler, error) {
	switch mode {
	case "bare":
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.ReadAll(r.Body); err != nil {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}), nil
	case "handler":
		h, err := tlwebhook.NewHandler(secret, tlwebhook.WithLogger(slog.New(slog.DiscardHandler)),
			tlwebhook.WithCallbackTimeout(timeout))
		if err != nil {
			return nil, err
		}
		h.OnJobCreated(func(context.Context, *tlwebhook.JobCreated) error { delivered.Add(1); return nil })
		h.OnJobFailed(func(context.Context, *tlwebhook.JobFailed) error { delivered.Add(1); return nil })
		h.OnJobCompleted(func(context.Context, *tlwebhook.JobCompleted) error { delivered.Add(1); return nil })
		h.OnWorkflowCompleted(func(context.Context, *tlwebhook.WorkflowCompleted) error { delivered.Add(1); return nil })
		h.OnSandboxEvent(func(context.Context, *tlwebhook.SandboxEvent) error { delivered.Add(1); return nil })
		h.OnApplicationEvent(func(context.Context, *tlwebhook.ApplicationEvent) error { delivered.Add(1); return nil })
		h.OnRequestEvent(func(context.Context, *tlwebhook.RequestEvent) error { delivered.Add(1); return nil })
		h.OnUnknown(func(context.Context, *tlwebhook.UnknownEvent) error { delivered.Add(1); return nil })
		return h, nil
	}
	return nil, fmt.Errorf("unknown -mode %q (want handler or bare)", mode)
}

// serve serves h on the webhook path until ctx is cancelled. Both modes
// use the same mux and server settings.
func serve(ctx context.Context, addr string, h http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle("POST "+webhookPath, h)
	srv := &http.Server{
		Addr:              addr,
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Fprintf(os.Stderr, "loadserver: %d callbacks\n", delivered.Load())
	return nil
}
