package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
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

// listenPrinter is listen's [tlwebhook.Observer]: it prints a line for
// every request the Handler rejects, with the library's reason, and one per
// drift of a verified delivery.
type listenPrinter struct{ out *lineWriter }

func (p listenPrinter) Observe(_ context.Context, o tlwebhook.Observation) {
	for _, d := range o.Drift {
		p.out.println(append([]string{"drift", kv("delivery", clip(o.Delivery.ID))}, driftFields(d)...)...)
	}
	if o.Outcome != tlwebhook.DeliveryRejected {
		return
	}
	fields := []string{"rejected", "status=" + strconv.Itoa(o.Status)}
	if o.Delivery.ID != "" {
		fields = append(fields, kv("delivery", clip(o.Delivery.ID)))
	}
	p.out.println(append(fields, kv("reason", o.Err.Error()))...)
}

// messageID returns a request's message id: svix-id, else webhook-id; ""
// when it has neither.
func messageID(h http.Header) string {
	if id := h.Get(tlwebhook.HeaderSvixID); id != "" {
		return id
	}
	return h.Get(tlwebhook.HeaderWebhookID)
}

// clip bounds a value a sender chose, such as a message id, to 128
// characters before it is printed.
func clip(s string) string { return fmt.Sprintf("%.128s", s) }

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
