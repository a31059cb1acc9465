package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tlwebhook/tlwebhook"
)

func runListen(ctx context.Context, e *env, args []string) int {
	f := newFlags("listen", "[-addr host:port] [-path /path] [-secret whsec_...]", `
Listen runs a webhook receiver (a tlwebhook.Handler with every callback
registered) until interrupted (SIGINT or SIGTERM), and prints:

  listening on http://ADDR/PATH
  event TYPE delivery=ID callback=CALLBACK key=value...   (each verified event)
  rejected status=CODE [delivery=ID] reason=...          (each rejection)
  not-found method=METHOD path=PATH status=404           (requests to other paths)
  stopped

Point "tlwebhook send" at it, or a tunnel to test real deliveries.`)
	addr := f.String("addr", "127.0.0.1:8080", "address to listen on; port 0 picks a free port")
	path := f.String("path", defaultPath, "path to receive webhooks on")
	secretFlag := f.secretFlag()
	tolerance := f.Duration("tolerance", tlwebhook.DefaultTolerance, "accepted age (and clock skew) of a delivery's timestamp")
	if code, done := f.parse(e, args); done {
		return code
	}
	if !strings.HasPrefix(*path, "/") {
		return f.usageError(e, "-path %q must start with /", *path)
	}
	if *tolerance <= 0 {
		return f.usageError(e, "-tolerance must be positive")
	}
	secret, code, ok := f.secret(e, *secretFlag)
	if !ok {
		return code
	}

	out := &lineWriter{w: e.stdout}
	logger := slog.New(&recordHandler{fn: func(level slog.Level, msg string, attrs map[string]string) {
		if status := attrs["status"]; status != "" {
			fields := []string{"rejected", "status=" + status}
			if id := attrs["delivery_id"]; id != "" {
				fields = append(fields, kv("delivery", id))
			}
			out.println(append(fields, kv("reason", attrs["error"]))...)
			return
		}
		fields := []string{"log", "level=" + level.String(), kv("msg", msg)}
		for _, k := range []string{"delivery_id", "event_type", "event_id", "error"} {
			if v := attrs[k]; v != "" {
				fields = append(fields, kv(k, v))
			}
		}
		out.println(fields...)
	}})
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithLogger(logger), tlwebhook.WithTolerance(*tolerance))
	if err != nil {
		return f.usageError(e, "%v", err)
	}
	onEvery(h, func(ctx context.Context, callback string, ev tlwebhook.Event) error {
		d, _ := tlwebhook.DeliveryFromContext(ctx)
		fields := describe(ev)
		typ := string(ev.Type())
		if typ == "" {
			typ = "unknown"
		}
		out.println(append([]string{"event", quoteIfNeeded(typ), kv("delivery", d.ID), kv("callback", callback)}, fields...)...)
		return nil
	})

	mux := http.NewServeMux()
	mux.Handle(*path, h)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		out.println("not-found", kv("method", r.Method), kv("path", r.URL.Path), "status=404")
		http.NotFound(w, r)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return f.fail(e, "%v", err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	out.println("listening on http://" + ln.Addr().String() + *path)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return f.fail(e, "%v", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return f.fail(e, "shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return f.fail(e, "%v", err)
	}
	out.println("stopped")
	return exitOK
}
