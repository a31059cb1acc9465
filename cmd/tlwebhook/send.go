package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// progressThreshold is the number of requests above which send prints
// progress lines instead of one line per successful request.
const progressThreshold = 20

func runSend(ctx context.Context, e *env, args []string) int {
	f := newFlags("send", "[-url URL] [-secret whsec_...|whsk_...] (-event TYPE | -file payload.json | -request FILE) [-n N] [-c C] [-v]", `
Send signs payloads and POSTs them to a receiver, each with a fresh message
id and the current time, and prints:

  sent K/N status=CODE latency=D event=TYPE delivery=ID [reason=TEXT]
                                                          (each request)
  < Name: value                                           (with -v: each
                                                          header of the answer)
  progress K/N ok=OK failed=FAILED                        (when N > 20)
  summary requests=N ok=OK failed=FAILED min=D p50=D p90=D p99=D max=D

When N is over 20, only failed requests get their own line. For an answer
other than 2xx, reason is the start of the answer's body, which for a
tlwebhook receiver names the cause (such as "webhook timestamp too old").
TYPE is an event type or a unique suffix of one (job.completed,
sandbox.failed, ...); the payload is the type's sample. "-event all" sends
one delivery of every event type; with -n it cycles through the types for N
requests instead. -file sends the file's bytes unchanged ("-" reads stdin).

-request replays a delivery captured by "tlwebhook listen -save DIR" (or
any raw HTTP request file): its body, unchanged, with its message id
(svix-id or webhook-id) and its Content-Type, signed afresh with the
current time and the given key, so that a real payload can be sent again
to a local or staging receiver. Its other headers (credentials included)
are not sent. With -n, every request carries the same message id, as
Svix's retries do.

A whsec_ secret signs with v1 entries, a whsk_ signing key with v1a
entries. Send exits 1 when any request fails or is answered with a status
other than 2xx.`)
	target := f.String("url", "http://127.0.0.1:8080"+defaultPath, "receiver URL")
	secretFlag := f.secretFlag(true)
	event := f.String("event", "", `event type to send a sample of, or "all"`)
	file := f.String("file", "", `payload file to send instead of a sample ("-" for stdin)`)
	reqFile := f.String("request", "", `captured request to replay with its message id ("-" for stdin)`)
	verbose := f.Bool("v", false, "print the headers of each answer shown")
	n := f.Int("n", 1, `number of requests; with "-event all" the default is one per event type`)
	c := f.Int("c", 1, "number of requests in flight at once")
	timeout := f.Duration("timeout", 10*time.Second, "timeout of each request")
	if code, done := f.parse(e, args); done {
		return code
	}
	if u, err := url.Parse(*target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return f.usageError(e, "-url %q is not an absolute http or https URL", *target)
	}
	if *n < 1 || *c < 1 {
		return f.usageError(e, "-n and -c must be at least 1")
	}
	if *timeout <= 0 {
		return f.usageError(e, "-timeout must be positive")
	}
	if given := btoi(*event != "") + btoi(*file != "") + btoi(*reqFile != ""); given != 1 {
		return f.usageError(e, "give exactly one of -event, -file and -request")
	}
	secret, code, ok := f.signingKey(e, *secretFlag)
	if !ok {
		return code
	}

	// payloads are sent round robin.
	type payload struct {
		typ    string
		body   []byte
		id     string      // the message id to sign with; "" for a fresh one each time
		header http.Header // headers sent besides the signature
	}
	var payloads []payload
	switch {
	case *reqFile != "":
		data, err := readInput(e, *reqFile)
		if err != nil {
			return f.fail(e, "%v", err)
		}
		header, body, notes, err := readRequest(data)
		if err != nil {
			return f.fail(e, "%s: not an HTTP request: %v", *reqFile, err)
		}
		id := messageID(header)
		if id == "" {
			return f.fail(e, "%s: no svix-id or webhook-id header: a replay needs the delivery's message id", *reqFile)
		}
		for _, n := range notes {
			fmt.Fprintln(e.stdout, "note: "+n)
		}
		typ := "request"
		if ev, err := tlwebhook.ParseEvent(body); err == nil && ev.Type() != "" {
			typ = string(ev.Type())
		}
		p := payload{typ: typ, body: body, id: id, header: http.Header{}}
		if ct := header.Get("Content-Type"); ct != "" {
			p.header.Set("Content-Type", ct)
		}
		payloads = []payload{p}
	case *file != "":
		body, err := readInput(e, *file)
		if err != nil {
			return f.fail(e, "%v", err)
		}
		payloads = []payload{{typ: "file", body: body}}
	case *event == "all":
		for _, t := range tlwebhook.EventTypes() {
			if tlwebhooktest.HasSample(t) {
				payloads = append(payloads, payload{typ: string(t), body: tlwebhooktest.Sample(t)})
			}
		}
		if !f.isSet("n") {
			*n = len(payloads) // one delivery of every type
		}
	default:
		t, err := parseEventType(*event)
		if err != nil {
			return f.usageError(e, "%v", err)
		}
		payloads = []payload{{typ: string(t), body: tlwebhooktest.Sample(t)}}
	}

	s := signer(secret)
	client := &http.Client{
		Timeout:   *timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: *c, Proxy: http.ProxyFromEnvironment},
	}
	defer client.CloseIdleConnections()

	type result struct {
		typ, id string
		answer  answer
		latency time.Duration
		err     error
	}
	jobs := make(chan int)
	results := make(chan result)
	var wg sync.WaitGroup
	for range min(*c, *n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				p := payloads[i%len(payloads)]
				h := s.Header(p.body)
				if p.id != "" {
					h = s.HeaderFor(p.id, time.Now(), p.body)
				}
				for name, values := range p.header {
					h[name] = values
				}
				start := time.Now()
				a, err := post(ctx, client, *target, p.body, h)
				results <- result{typ: p.typ, id: h.Get(tlwebhook.HeaderSvixID), answer: a, latency: time.Since(start), err: err}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for i := range *n {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()

	start := time.Now()
	each := *n <= progressThreshold
	step := max(*n/10, 1)
	var latencies []time.Duration
	done, failed := 0, 0
	for r := range results {
		done++
		good := r.err == nil && r.answer.status >= 200 && r.answer.status < 300
		if !good {
			failed++
		}
		if r.err == nil {
			latencies = append(latencies, r.latency)
		}
		if each || !good {
			fields := []string{"sent", fmt.Sprintf("%d/%d", done, *n)}
			if r.err != nil {
				fields = append(fields, "status=error", kv("error", r.err.Error()))
			} else {
				fields = append(fields, "status="+strconv.Itoa(r.answer.status))
			}
			fields = append(fields, "latency="+round(r.latency), kv("event", r.typ), kv("delivery", r.id))
			if r.answer.reason != "" {
				fields = append(fields, kv("reason", r.answer.reason))
			}
			fmt.Fprintln(e.stdout, strings.Join(fields, " "))
			if *verbose {
				printHeader(e.stdout, r.answer.header)
			}
		}
		if !each && (done%step == 0 || done == *n) {
			fmt.Fprintf(e.stdout, "progress %d/%d ok=%d failed=%d\n", done, *n, done-failed, failed)
		}
	}
	elapsed := time.Since(start)
	if done < *n {
		failed += *n - done // cancelled before being sent
	}

	slices.Sort(latencies)
	fields := []string{"summary", fmt.Sprintf("requests=%d ok=%d failed=%d", *n, *n-failed, failed)}
	if len(latencies) > 0 {
		fields = append(fields,
			"min="+round(latencies[0]),
			"p50="+round(percentile(latencies, 50)),
			"p90="+round(percentile(latencies, 90)),
			"p99="+round(percentile(latencies, 99)),
			"max="+round(latencies[len(latencies)-1]))
	}
	fields = append(fields, "elapsed="+round(elapsed))
	fmt.Fprintln(e.stdout, strings.Join(fields, " "))
	if failed > 0 {
		return exitFailure
	}
	return exitOK
}

// percentile returns the p-th percentile of sorted latencies (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// printHeader prints an answer's header, one "< Name: value" line per
// value, sorted by name.
func printHeader(w io.Writer, h http.Header) {
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[name] {
			fmt.Fprintf(w, "< %s: %s\n", name, reasonText([]byte(v)))
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readInput reads a file, or stdin for "-".
func readInput(e *env, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(e.stdin)
	}
	return os.ReadFile(name)
}
