// Command basic is a minimal Tensorlake webhook receiver: a net/http server
// that verifies each delivery with tlwebhook, logs every event with its ids,
// and shuts down gracefully on SIGINT or SIGTERM.
//
// Run it with the endpoint's signing secret:
//
//	TENSORLAKE_WEBHOOK_SECRET=whsec_... go run ./examples/basic -addr :8080
//
// and point the Tensorlake webhook at https://YOUR-HOST/webhooks/tensorlake.
// To try it locally, send it signed sample deliveries:
//
//	go run ./cmd/tlwebhook send -url http://127.0.0.1:8080/webhooks/tensorlake -event all -n 16
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tlwebhook/tlwebhook"
)

const (
	envSecret   = "TENSORLAKE_WEBHOOK_SECRET"
	webhookPath = "/webhooks/tensorlake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// run parses flags, starts the server and serves until ctx is cancelled.
// It returns the process's exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("basic", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", ":8080", "address to listen on")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	secret := getenv(envSecret)
	if secret == "" {
		fmt.Fprintf(stderr, "basic: %s is not set: set it to the webhook endpoint's signing secret (whsec_...)\n", envSecret)
		return 1
	}
	srv, err := newServer(secret, logger)
	if err != nil {
		fmt.Fprintf(stderr, "basic: %s: %v\n", envSecret, err)
		return 1
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "basic: %v\n", err)
		return 1
	}
	if err := serve(ctx, srv, ln, logger); err != nil {
		fmt.Fprintf(stderr, "basic: %v\n", err)
		return 1
	}
	return 0
}

// newServer returns an HTTP server that receives Tensorlake webhooks on
// POST /webhooks/tensorlake and logs each event with its ids.
func newServer(secret string, logger *slog.Logger) (*http.Server, error) {
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	logEvents(h, logger)

	mux := http.NewServeMux()
	mux.Handle("POST "+webhookPath, h)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}, nil
}

// logEvents registers a callback for every event type that logs the
// event's ids and status, never payload content. A real receiver would
// record the work durably here and do it asynchronously.
func logEvents(h *tlwebhook.Handler, logger *slog.Logger) {
	log := func(ctx context.Context, ev tlwebhook.Event, attrs ...slog.Attr) {
		d, _ := tlwebhook.DeliveryFromContext(ctx)
		attrs = append([]slog.Attr{
			slog.String("event_type", string(ev.Type())),
			slog.String("delivery_id", d.ID),
		}, attrs...)
		logger.LogAttrs(ctx, slog.LevelInfo, "tensorlake event", attrs...)
	}
	h.OnJobCreated(func(ctx context.Context, ev *tlwebhook.JobCreated) error {
		log(ctx, ev, slog.String("job_id", ev.JobID))
		return nil
	})
	h.OnJobFailed(func(ctx context.Context, ev *tlwebhook.JobFailed) error {
		log(ctx, ev, slog.String("job_id", ev.JobID))
		return nil
	})
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		log(ctx, ev, slog.String("job_id", ev.JobID), slog.Int64("pages_parsed", ev.Usage.PagesParsed))
		return nil
	})
	h.OnWorkflowCompleted(func(ctx context.Context, ev *tlwebhook.WorkflowCompleted) error {
		log(ctx, ev, slog.String("workflow_name", ev.WorkflowName), slog.String("invocation_id", ev.InvocationID),
			slog.Bool("all_succeeded", ev.AllSucceeded()))
		return nil
	})
	h.OnSandboxEvent(func(ctx context.Context, ev *tlwebhook.SandboxEvent) error {
		log(ctx, ev, slog.String("event_id", ev.EventID), slog.String("sandbox_id", ev.Data.Sandbox.ID))
		return nil
	})
	h.OnApplicationEvent(func(ctx context.Context, ev *tlwebhook.ApplicationEvent) error {
		log(ctx, ev, slog.String("event_id", ev.EventID), slog.String("application", ev.Data.Application.Name))
		return nil
	})
	h.OnRequestEvent(func(ctx context.Context, ev *tlwebhook.RequestEvent) error {
		log(ctx, ev, slog.String("event_id", ev.EventID), slog.String("request_id", ev.Data.Request.ID))
		return nil
	})
	h.OnUnknown(func(ctx context.Context, ev *tlwebhook.UnknownEvent) error {
		log(ctx, ev, slog.String("event_id", ev.EventID))
		return nil
	})
}

// serve serves on ln until ctx is cancelled, then shuts the server down,
// letting deliveries in progress finish for up to 10 seconds.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, logger *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String(), "path", webhookPath)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}
