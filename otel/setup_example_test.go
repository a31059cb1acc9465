package tlwebhookotel_test

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/tlwebhook/tlwebhook"
	tlwebhookotel "github.com/tlwebhook/tlwebhook/otel"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The whole setup of a service: the OpenTelemetry SDK with an exporter for
// metrics and one for traces (stdout here; in production the OTLP exporters
// of go.opentelemetry.io/otel/exporters/otlp, or Prometheus, take the same
// place), installed as the global providers, then the Handler behind
// otelhttp so that each delivery's span is a child of the HTTP server span.
func Example_setup() {
	ctx := context.Background()
	metricExporter, err := stdoutmetric.New()
	if err != nil {
		log.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExporter, sdkmetric.WithInterval(time.Minute))))
	traceExporter, err := stdouttrace.New()
	if err != nil {
		log.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(traceExporter))
	otel.SetMeterProvider(mp)
	otel.SetTracerProvider(tp)
	defer func() { _ = errors.Join(mp.Shutdown(ctx), tp.Shutdown(ctx)) }() // flush on exit

	h, err := tlwebhook.NewHandler(os.Getenv("TENSORLAKE_WEBHOOK_SECRET"), tlwebhook.WithObserver(tlwebhookotel.New()))
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/tensorlake", otelhttp.NewHandler(h, "POST /webhooks/tensorlake"))
}
