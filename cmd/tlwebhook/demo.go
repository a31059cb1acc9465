package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// demoCase is one delivery of the demo and the outcome it must have.
type demoCase struct {
	name       string
	body       []byte
	header     http.Header
	wantStatus int
	// wantCallback is the callback that must run, or "none".
	wantCallback string
	// wantType is the event type the callback must see.
	wantType tlwebhook.EventType
	// wantReason is the start of the observed rejection reason.
	wantReason string
}

// demoResult is what the receiver saw of one delivery.
type demoResult struct {
	callback string
	typ      tlwebhook.EventType
	fields   []string
	calls    int
	reason   string
}

// demoReceiver runs a Handler and records, per delivery id, which callback
// ran and why a delivery was rejected.
type demoReceiver struct {
	mu      sync.Mutex
	results map[string]*demoResult
}

func (r *demoReceiver) result(id string) *demoResult {
	res, ok := r.results[id]
	if !ok {
		res = &demoResult{callback: "none"}
		r.results[id] = res
	}
	return res
}

func (r *demoReceiver) onEvent(ctx context.Context, callback string, ev tlwebhook.Event) error {
	d, _ := tlwebhook.DeliveryFromContext(ctx)
	fields := describe(ev)
	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.result(d.ID)
	res.calls++
	res.callback, res.typ, res.fields = callback, ev.Type(), fields
	return nil
}

// Observe records why the Handler rejected or failed a delivery.
func (r *demoReceiver) Observe(_ context.Context, o tlwebhook.Observation) {
	if o.Err == nil || o.Delivery.ID == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.result(o.Delivery.ID).reason = o.Err.Error()
}

func runDemo(ctx context.Context, e *env, args []string) int {
	f := newFlags("demo", "", `
Demo starts a tlwebhook.Handler on 127.0.0.1 with a fresh random secret and
sends it one signed delivery of every supported event type, one forged
delivery (signed with another secret) and one stale delivery (signed ten
minutes ago). It prints one line per delivery:

  ok|FAIL  CASE  status=CODE callback=CALLBACK key=value...

and a summary line, PASS or FAIL. It exits 0 only when every delivery had
the expected outcome: 204 and the right callback for each event, 401 and no
callback for the forged and the stale one. It needs no network and no
configuration.`)
	if code, done := f.parse(e, args); done {
		return code
	}

	secret := tlwebhooktest.NewSecret()
	recv := &demoReceiver{results: make(map[string]*demoResult)}
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithObserver(recv), tlwebhook.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return f.fail(e, "%v", err)
	}
	onEvery(h, recv.onEvent)

	mux := http.NewServeMux()
	mux.Handle("POST "+defaultPath, h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return f.fail(e, "%v", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	url := "http://" + ln.Addr().String() + defaultPath

	cases := demoCases(secret)
	fmt.Fprintf(e.stdout, "demo: receiver on %s with a fresh secret, %d deliveries\n", url, len(cases))

	client := &http.Client{Timeout: 10 * time.Second}
	failed := 0
	for _, c := range cases {
		a, err := post(ctx, client, url, c.body, c.header)
		if err != nil {
			fmt.Fprintf(e.stdout, "FAIL %-44s %s\n", c.name, kv("error", err.Error()))
			failed++
			continue
		}
		recv.mu.Lock()
		res := *recv.result(c.header.Get(tlwebhook.HeaderSvixID))
		recv.mu.Unlock()

		ok := a.status == c.wantStatus && res.callback == c.wantCallback &&
			(c.wantCallback == "none" && res.calls == 0 || res.calls == 1 && res.typ == c.wantType) &&
			strings.HasPrefix(res.reason, c.wantReason)
		verdict := "ok  "
		if !ok {
			verdict = "FAIL"
			failed++
		}
		fields := []string{verdict, fmt.Sprintf("%-44s", c.name), "status=" + strconv.Itoa(a.status), kv("callback", res.callback)}
		fields = append(fields, res.fields...)
		if res.reason != "" {
			fields = append(fields, kv("reason", res.reason))
		}
		if !ok {
			fields = append(fields, fmt.Sprintf("want_status=%d", c.wantStatus), kv("want_callback", c.wantCallback))
		}
		fmt.Fprintln(e.stdout, strings.Join(fields, " "))
	}
	if failed > 0 {
		fmt.Fprintf(e.stdout, "FAIL %d of %d deliveries not as expected\n", failed, len(cases))
		return exitFailure
	}
	fmt.Fprintf(e.stdout, "PASS %d of %d deliveries as expected\n", len(cases), len(cases))
	return exitOK
}

// demoCases returns one signed delivery of every event type, then a forged
// and a stale one.
func demoCases(secret string) []demoCase {
	s := signer(secret)
	var cases []demoCase
	kinds := tlwebhook.EventKinds()
	for _, k := range kinds {
		callback := k.Callback
		for _, t := range k.Types {
			if !tlwebhooktest.HasSample(t) {
				continue
			}
			body := tlwebhooktest.Sample(t)
			cases = append(cases, demoCase{
				name: string(t), body: body, header: s.Header(body),
				wantStatus: http.StatusNoContent, wantCallback: callback, wantType: t,
			})
		}
	}

	body := tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)
	forger := signer(tlwebhooktest.NewSecret())
	cases = append(cases, demoCase{
		name: "forged", body: body, header: forger.Header(body),
		wantStatus: http.StatusUnauthorized, wantCallback: "none",
		wantReason: tlwebhook.ErrNoMatchingSignature.Error(),
	})

	stale := signer(secret)
	stale.Now = func() time.Time { return time.Now().Add(-10 * time.Minute) }
	cases = append(cases, demoCase{
		name: "stale", body: body, header: stale.Header(body),
		wantStatus: http.StatusUnauthorized, wantCallback: "none",
		wantReason: tlwebhook.ErrTimestampTooOld.Error(),
	})
	return cases
}

// An answer is what a receiver answered to one delivery.
type answer struct {
	status int
	header http.Header
	// reason is the start of the body's text, for a non-2xx answer.
	reason string
}

// maxReason bounds the bytes of a response body shown as its reason.
const maxReason = 200

// post sends one delivery and returns the answer.
func post(ctx context.Context, client *http.Client, url string, body []byte, header http.Header) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	for name, values := range header {
		req.Header[name] = values
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "tlwebhook-cli")
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	text, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason+1))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if a.status < 200 || a.status > 299 {
		a.reason = reasonText(text)
	}
	return a, nil
}

// reasonText turns the start of a response body into one line of text:
// whitespace runs become one space, other control characters and invalid
// UTF-8 are replaced, and a body cut at maxReason bytes ends in "...".
func reasonText(b []byte) string {
	cut := len(b) > maxReason
	if cut {
		b = b[:maxReason]
	}
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "\uFFFD")), " ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
	if cut {
		s = strings.TrimSuffix(s, "\uFFFD") + "..."
	}
	return s
}
