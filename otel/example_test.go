package tlwebhookotel_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/tlwebhook/tlwebhook"
	tlwebhookotel "github.com/tlwebhook/tlwebhook/otel"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// A Handler reporting to the global providers, behind otelhttp so that each
// delivery's span is a child of the HTTP server span. Install the
// OpenTelemetry SDK's providers with otel.SetMeterProvider and
// otel.SetTracerProvider at start-up.
func ExampleNew() {
	h, err := tlwebhook.NewHandler(tlwebhooktest.NewSecret(), tlwebhook.WithObserver(tlwebhookotel.New()))
	if err != nil {
		log.Fatal(err)
	}
	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
		return nil
	})
	http.Handle("POST /webhooks/tensorlake", otelhttp.NewHandler(h, "POST /webhooks/tensorlake"))
}

// Counting a delivery with the SDK's meter provider.
func ExampleWithMeterProvider() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()

	secret := tlwebhooktest.NewSecret()
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithObserver(tlwebhookotel.New(tlwebhookotel.WithMeterProvider(mp))))
	if err != nil {
		log.Fatal(err)
	}
	req := tlwebhooktest.NewRequest(secret, "/webhooks/tensorlake", tlwebhooktest.Sample(tlwebhook.EventTypeSandboxFailed))
	h.ServeHTTP(httptest.NewRecorder(), req)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range sum.DataPoints {
					fmt.Println(m.Name, dp.Attributes.Encoded(attribute.DefaultEncoder()), dp.Value)
				}
			}
		}
	}
	// Output:
	// tlwebhook.deliveries http.response.status_code=204,tlwebhook.event_type=tensorlake.sandbox.failed,tlwebhook.outcome=processed 1
}
