package main

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/internal/everycallback"
)

// describe returns an event's key fields (ids and statuses, never free text
// beyond a job's error) as key=value strings.
func describe(ev tlwebhook.Event) (fields []string) {
	switch e := ev.(type) {
	case *tlwebhook.JobCreated:
		return []string{kv("job_id", e.JobID), kv("status", string(e.Status))}
	case *tlwebhook.JobFailed:
		return []string{kv("job_id", e.JobID), kv("status", string(e.Status)), kv("error", e.Error)}
	case *tlwebhook.JobCompleted:
		return []string{kv("job_id", e.JobID), kv("status", string(e.Status)),
			kv("pages_parsed", strconv.FormatInt(e.Usage.PagesParsed, 10))}
	case *tlwebhook.WorkflowCompleted:
		return []string{kv("workflow", e.WorkflowName), kv("invocation", e.InvocationID),
			kv("succeeded", strings.Join(e.Succeeded(), ",")), kv("failed", strings.Join(e.Failed(), ","))}
	case *tlwebhook.SandboxEvent:
		f := []string{kv("event_id", e.EventID), kv("sandbox", e.Data.Sandbox.ID), kv("status", string(e.Data.Sandbox.Status))}
		if r := e.Data.Sandbox.OutcomeReason; r != nil {
			f = append(f, kv("outcome_reason", string(*r)))
		}
		return f
	case *tlwebhook.ApplicationEvent:
		a := e.Data.Application
		return []string{kv("event_id", e.EventID), kv("application", a.Name),
			kv("version", a.Version), kv("state", string(a.State))}
	case *tlwebhook.RequestEvent:
		r := e.Data.Request
		f := []string{kv("event_id", e.EventID), kv("request", r.ID), kv("status", string(r.Status))}
		if r.FailureReason != nil {
			f = append(f, kv("failure_reason", string(*r.FailureReason)))
		}
		return f
	case *tlwebhook.UnknownEvent:
		return []string{kv("event_type", string(e.EventType)), kv("event_id", e.EventID)}
	}
	return nil
}

// onEvery registers fn as every callback of h, with the callback's name.
func onEvery(h *tlwebhook.Handler, fn func(ctx context.Context, callback string, ev tlwebhook.Event) error) {
	everycallback.Register(h, fn)
}

// callbackFor names the callback an event type reaches, from the library's
// event table: its own, else its family's; OnUnknown for a type the table
// does not model.
func callbackFor(t tlwebhook.EventType) string {
	kinds := tlwebhook.EventKinds()
	for _, k := range kinds {
		if slices.Contains(k.Types, t) && k.Callback != "" {
			return k.Callback
		}
	}
	best := ""
	for _, k := range kinds {
		if k.Prefix != "" && strings.HasPrefix(string(t), k.Prefix) && len(k.Prefix) > len(best) {
			best = k.Prefix
		}
	}
	for _, k := range kinds {
		if best != "" && k.Prefix == best {
			return k.Callback
		}
	}
	return "OnUnknown"
}

// recordHandler is a [slog.Handler] that passes each record at Info or
// above, flattened to string attributes, to a function. The receivers use it
// to learn why the library rejected a delivery.
type recordHandler struct {
	fn    func(level slog.Level, msg string, attrs map[string]string)
	attrs []slog.Attr
}

func (h *recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := make(map[string]string, len(h.attrs)+r.NumAttrs())
	for _, a := range h.attrs {
		attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	h.fn(r.Level, r.Message, attrs)
	return nil
}

func (h *recordHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &recordHandler{fn: h.fn, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)}
}

func (h *recordHandler) WithGroup(string) slog.Handler { return h }

// lineWriter writes whole lines to w, one goroutine at a time.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lineWriter) println(fields ...string) {
	line := strings.Join(fields, " ") + "\n"
	lw.mu.Lock()
	defer lw.mu.Unlock()
	_, _ = lw.w.Write([]byte(line))
}
