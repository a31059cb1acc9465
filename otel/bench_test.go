package tlwebhookotel_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tlwebhook/tlwebhook"
	tlwebhookotel "github.com/tlwebhook/tlwebhook/otel"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkHandler measures one delivery through a Handler whose callback
// returns nil, without an observer and with this package's observer on:
//   - global: the global providers, with no SDK installed (what a program
//     that never configures OpenTelemetry pays);
//   - sdk: the SDK's meter provider (a manual reader) and tracer provider
//     (every span sampled, exported in batches to a no-op exporter);
//   - sdk_unsampled: the same, sampling no span.
//
// Compare with benchstat -col /observer.
func BenchmarkHandler(b *testing.B) {
	newSDK := func(b *testing.B, sampler sdktrace.Sampler) tlwebhook.Observer {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler),
			sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		b.Cleanup(func() {
			_ = mp.Shutdown(context.Background())
			_ = tp.Shutdown(context.Background())
		})
		return tlwebhookotel.New(tlwebhookotel.WithMeterProvider(mp), tlwebhookotel.WithTracerProvider(tp))
	}
	variants := []struct {
		name string
		obs  func(b *testing.B) tlwebhook.Observer
	}{
		{"none", nil},
		{"global", func(*testing.B) tlwebhook.Observer { return tlwebhookotel.New() }},
		{"sdk", func(b *testing.B) tlwebhook.Observer { return newSDK(b, sdktrace.AlwaysSample()) }},
		{"sdk_unsampled", func(b *testing.B) tlwebhook.Observer { return newSDK(b, sdktrace.NeverSample()) }},
	}
	payload := tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)
	for _, v := range variants {
		b.Run("observer="+v.name, func(b *testing.B) {
			secret := tlwebhooktest.NewSecret()
			var opts []tlwebhook.HandlerOption
			if v.obs != nil {
				opts = append(opts, tlwebhook.WithObserver(v.obs(b)))
			}
			h, err := tlwebhook.NewHandler(secret, opts...)
			if err != nil {
				b.Fatal(err)
			}
			h.OnJobCompleted(func(context.Context, *tlwebhook.JobCompleted) error { return nil })
			br := newBenchRequest(b, secret, payload)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if st := br.serve(h); st != http.StatusNoContent {
					b.Fatalf("status %d", st)
				}
			}
		})
	}
}

// BenchmarkObserve measures Observe alone, for a processed delivery whose
// callback ran and for a rejected one, with the global providers (no SDK
// installed) and with the SDK providers of BenchmarkHandler's sdk variant.
func BenchmarkObserve(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	observers := []struct {
		name string
		obs  tlwebhook.Observer
	}{
		{"global", tlwebhookotel.New()},
		{"sdk", tlwebhookotel.New(tlwebhookotel.WithMeterProvider(mp), tlwebhookotel.WithTracerProvider(tp))},
	}
	observations := []struct {
		name string
		o    tlwebhook.Observation
	}{
		{"processed", tlwebhook.Observation{
			Delivery:  tlwebhook.Delivery{ID: tlwebhooktest.NewMessageID(), Timestamp: time.Now()},
			EventType: tlwebhook.EventTypeJobCompleted,
			Outcome:   tlwebhook.DeliveryProcessed,
			Status:    http.StatusNoContent,
			Duration:  time.Millisecond,
		}},
		{"rejected", tlwebhook.Observation{
			Delivery: tlwebhook.Delivery{ID: tlwebhooktest.NewMessageID(), Timestamp: time.Now()},
			Outcome:  tlwebhook.DeliveryRejected,
			Status:   http.StatusUnauthorized,
			Err:      tlwebhook.ErrNoMatchingSignature,
		}},
	}
	ctx := context.Background()
	for _, p := range observers {
		for _, o := range observations {
			b.Run("provider="+p.name+"/"+o.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					p.obs.Observe(ctx, o.o)
				}
			})
		}
	}
}

// benchRequest is a signed request served again and again without
// re-signing: its body rewinds.
type benchRequest struct {
	req  *http.Request
	body *bytes.Reader
	raw  []byte
	w    discardWriter
}

func newBenchRequest(b *testing.B, secret string, payload []byte) *benchRequest {
	b.Helper()
	signer, err := tlwebhooktest.NewSigner(secret)
	if err != nil {
		b.Fatal(err)
	}
	br := &benchRequest{body: bytes.NewReader(payload), raw: payload, w: discardWriter{header: http.Header{}}}
	req, err := http.NewRequest(http.MethodPost, "http://localhost/webhooks/tensorlake", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header = signer.Header(payload)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(payload))
	req.Body = readCloser{br.body}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	br.req = req.WithContext(ctx)
	return br
}

func (br *benchRequest) serve(h http.Handler) int {
	br.body.Reset(br.raw)
	clear(br.w.header)
	br.w.status = 0
	h.ServeHTTP(&br.w, br.req)
	if br.w.status == 0 {
		return http.StatusOK
	}
	return br.w.status
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// discardWriter is an http.ResponseWriter that keeps only the status.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}
func (w *discardWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}
