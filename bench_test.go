package tlwebhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// The benchmarks compare, on identical inputs:
//
//   - BenchmarkVerify: the floor (one HMAC-SHA256 over id.ts.body with a
//     pre-keyed hash that is reused), Verifier.Verify, and svix's Verify;
//   - BenchmarkHandler: Handler.ServeHTTP, and the handler people write by
//     hand (io.ReadAll, svix Verify, json.Unmarshal, 200);
//   - BenchmarkParseEvent: ParseEvent, and json.Unmarshal into the event's
//     struct, for every fixture.
//
// bench/run.sh runs them with -count and benchstat; BENCHMARKS.md has the
// results.

const (
	benchSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	benchMsgID  = "msg_2LhQ8hG1w1KxHh3k5mFqg0o3Zr7"
)

// benchDelivery is a body with the headers svix's own library signs for it
// at the current time. Benchmarks sign when they start, since svix's Verify
// checks its fixed five-minute tolerance against the wall clock.
type benchDelivery struct {
	body   []byte
	header http.Header
	ts     int64
	sig    string
}

func signForBench(tb testing.TB, body []byte) benchDelivery {
	tb.Helper()
	wh, err := svix.NewWebhook(benchSecret)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	sig, err := wh.Sign(benchMsgID, now, body)
	if err != nil {
		tb.Fatal(err)
	}
	ts := now.Unix()
	h := http.Header{}
	h.Set(HeaderSvixID, benchMsgID)
	h.Set(HeaderSvixTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSvixSignature, sig)
	return benchDelivery{body: body, header: h, ts: ts, sig: sig}
}

// paddedBody returns a JSON object of exactly n bytes.
func paddedBody(n int) []byte {
	const head, tail = `{"job_id":"parse_pad","status":"pending","pad":"`, `"}`
	pad := n - len(head) - len(tail)
	var b bytes.Buffer
	b.WriteString(head)
	for i := 0; i < pad; i++ {
		b.WriteByte('a' + byte(i%26))
	}
	b.WriteString(tail)
	return b.Bytes()
}

var verifySizes = []struct {
	name string
	n    int
}{
	{"256B", 256},
	{"2KiB", 2 << 10},
	{"64KiB", 64 << 10},
}

// hmacFloor is the least work any verifier must do: one HMAC-SHA256 over
// id.ts.body, with the keyed state reused instead of rebuilt.
type hmacFloor struct {
	mac    hash.Hash
	prefix []byte
	sum    [sha256.Size]byte
}

func newHMACFloor(tb testing.TB, d benchDelivery) *hmacFloor {
	tb.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(benchSecret, "whsec_"))
	if err != nil {
		tb.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	f := &hmacFloor{mac: mac, prefix: []byte(benchMsgID + "." + strconv.FormatInt(d.ts, 10) + ".")}
	// The floor must compute the signature svix sent, or it measures
	// nothing.
	f.run(d.body)
	if got := "v1," + base64.StdEncoding.EncodeToString(f.sum[:]); got != d.sig {
		tb.Fatalf("floor computes %s, svix signed %s", got, d.sig)
	}
	return f
}

func (f *hmacFloor) run(body []byte) {
	f.mac.Reset()
	f.mac.Write(f.prefix)
	f.mac.Write(body)
	f.mac.Sum(f.sum[:0])
}

func BenchmarkVerify(b *testing.B) {
	b.Run("floor", func(b *testing.B) {
		for _, size := range verifySizes {
			b.Run(size.name, func(b *testing.B) {
				d := signForBench(b, paddedBody(size.n))
				f := newHMACFloor(b, d)
				b.SetBytes(int64(len(d.body)))
				b.ReportAllocs()
				for b.Loop() {
					f.run(d.body)
				}
			})
		}
	})
	b.Run("tlwebhook", func(b *testing.B) {
		for _, size := range verifySizes {
			b.Run(size.name, func(b *testing.B) {
				d := signForBench(b, paddedBody(size.n))
				v, err := NewVerifier(benchSecret)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(d.body)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify(d.body, d.header); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
	b.Run("svix", func(b *testing.B) {
		for _, size := range verifySizes {
			b.Run(size.name, func(b *testing.B) {
				d := signForBench(b, paddedBody(size.n))
				wh, err := svix.NewWebhook(benchSecret)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(d.body)))
				b.ReportAllocs()
				for b.Loop() {
					if err := wh.Verify(d.body, d.header); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
}

// discardWriter is the least a ResponseWriter can be: it keeps the status
// and drops the body, so that handler benchmarks measure the handler.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

func (w *discardWriter) reset() {
	w.status = 0
	clear(w.header)
}

// rewindBody is a request body that can be read again after Reset, so
// that one *http.Request serves every iteration.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// benchRequest is one signed POST reused across iterations.
type benchRequest struct {
	req  *http.Request
	body *rewindBody
	raw  []byte
	w    discardWriter
}

func newBenchRequest(tb testing.TB, payload []byte) *benchRequest {
	tb.Helper()
	d := signForBench(tb, payload)
	br := &benchRequest{body: &rewindBody{}, raw: payload, w: discardWriter{header: http.Header{}}}
	req, err := http.NewRequest(http.MethodPost, "http://localhost/webhooks/tensorlake", nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header = d.header
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(payload))
	req.Body = br.body
	// As under net/http, the request's context can be cancelled, so that
	// contexts derived from it cost what they cost in a server.
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	br.req = req.WithContext(ctx)
	return br
}

// serve runs h once on the request and returns the status it wrote.
func (br *benchRequest) serve(h http.Handler) int {
	br.body.Reset(br.raw)
	br.w.reset()
	h.ServeHTTP(&br.w, br.req)
	if br.w.status == 0 {
		return http.StatusOK
	}
	return br.w.status
}

// handwritten is the handler one writes with svix's library and
// encoding/json.
func handwritten[T any](wh *svix.Webhook, sink func(*T)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		var ev T
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		sink(&ev)
		w.WriteHeader(http.StatusOK)
	}
}

// benchSink keeps callback results alive.
var benchSink int64

// readFixture reads a payload, given by its path from the module root.
func readFixture(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// newBenchHandler returns a Handler with a trivial callback for every event
// type, logging nowhere.
func newBenchHandler(tb testing.TB, opts ...HandlerOption) *Handler {
	tb.Helper()
	h, err := NewHandler(benchSecret, append([]HandlerOption{WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	// A trivial callback in every slot of the event table.
	for i := range h.callbacks {
		cb := callbackFunc(func(_ context.Context, ev Event) error { benchSink += int64(len(ev.Type())); return nil })
		h.callbacks[i].Store(&cb)
	}
	return h
}

// handlerCases are the requests of BenchmarkHandler: the two shapes
// Tensorlake sends most, and a 2 KiB job.completed with fields the struct
// does not model.
var handlerCases = []struct {
	name    string
	fixture string
	hand    func(*svix.Webhook) http.Handler
}{
	{"job_completed", samplePath(EventTypeJobCompleted), func(wh *svix.Webhook) http.Handler {
		return handwritten(wh, func(ev *JobCompleted) { benchSink += ev.Usage.PagesParsed })
	}},
	{"sandbox_failed", samplePath(EventTypeSandboxFailed), func(wh *svix.Webhook) http.Handler {
		return handwritten(wh, func(ev *SandboxEvent) { benchSink += ev.Data.Sandbox.GenerationID })
	}},
	{"2KiB", "bench/testdata/job_completed_2kib.json", func(wh *svix.Webhook) http.Handler {
		return handwritten(wh, func(ev *JobCompleted) { benchSink += ev.Usage.PagesParsed })
	}},
}

func BenchmarkHandler(b *testing.B) {
	// Our Handler with its defaults, and without its callback timeout
	// (which costs a timer and a context per delivery).
	variants := []struct {
		name string
		opts []HandlerOption
	}{
		{"tlwebhook", nil},
		{"tlwebhook_untimed", []HandlerOption{WithCallbackTimeout(0)}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			for _, c := range handlerCases {
				b.Run(c.name, func(b *testing.B) {
					h := newBenchHandler(b, v.opts...)
					br := newBenchRequest(b, readFixture(b, c.fixture))
					b.SetBytes(int64(len(br.raw)))
					b.ReportAllocs()
					for b.Loop() {
						if st := br.serve(h); st != http.StatusNoContent {
							b.Fatalf("status %d", st)
						}
					}
				})
			}
		})
	}
	b.Run("handwritten", func(b *testing.B) {
		for _, c := range handlerCases {
			b.Run(c.name, func(b *testing.B) {
				wh, err := svix.NewWebhook(benchSecret)
				if err != nil {
					b.Fatal(err)
				}
				h := c.hand(wh)
				br := newBenchRequest(b, readFixture(b, c.fixture))
				b.SetBytes(int64(len(br.raw)))
				b.ReportAllocs()
				for b.Loop() {
					if st := br.serve(h); st != http.StatusOK {
						b.Fatalf("status %d", st)
					}
				}
			})
		}
	})
}

// samplePath is the path of an event type's sample payload, from the module
// root: tlwebhooktest embeds the project's only copy of the samples.
func samplePath(t EventType) string { return "tlwebhooktest/testdata/samples/" + string(t) + ".json" }

// benchPayloads lists the fixtures of BenchmarkParseEvent and of the
// differential tests against the oracle: the samples, testdata/*.json and
// the larger payloads under bench/testdata, as paths from the module root.
func benchPayloads(tb testing.TB) []string {
	tb.Helper()
	var paths []string
	for _, dir := range []string{"tlwebhooktest/testdata/samples", "testdata", "bench/testdata"} {
		names, err := filepath.Glob(filepath.Join(filepath.FromSlash(dir), "*.json"))
		if err != nil {
			tb.Fatal(err)
		}
		paths = append(paths, names...)
	}
	if len(paths) == 0 {
		tb.Fatal("no fixtures")
	}
	for i, p := range paths {
		paths[i] = filepath.ToSlash(p)
	}
	return paths
}

// stdDecode decodes payload with encoding/json into a new value of the
// same type as ev: what a hand-written receiver does at least.
func stdDecode(ev Event, payload []byte) error {
	return json.Unmarshal(payload, reflect.New(reflect.TypeOf(ev).Elem()).Interface())
}

func BenchmarkParseEvent(b *testing.B) {
	for _, path := range benchPayloads(b) {
		payload := readFixture(b, path)
		ev, err := ParseEvent(payload)
		if err != nil {
			// Fixtures that are rejected are not benchmarked.
			continue
		}
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		b.Run("tlwebhook/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseEvent(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
		if _, unknown := ev.(*UnknownEvent); unknown {
			// encoding/json has no struct to compare with.
			continue
		}
		b.Run("encoding_json/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if err := stdDecode(ev, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
