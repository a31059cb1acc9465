package tlwebhook_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tl "github.com/tlwebhook/tlwebhook"
)

// loadKind is one kind of delivery in the load test's mix.
type loadKind struct {
	name     string
	method   string
	fixture  string // body from testdata/, unless body is set
	body     string
	sign     string // "valid", "forged", "foreign", "stale", "tampered"
	want     int
	callback bool // the callback must run exactly once
}

// loadKinds is the mix: valid deliveries of several event types (one whose
// callback fails), and forgeries and malformed requests of every kind.
var loadKinds = []loadKind{
	{name: "job completed", fixture: "tensorlake.document_ingestion.job.completed.json", sign: "valid", want: http.StatusNoContent, callback: true},
	{name: "sandbox failed", fixture: "tensorlake.sandbox.failed.json", sign: "valid", want: http.StatusNoContent, callback: true},
	{name: "request completed", fixture: "tensorlake.application.request.completed.json", sign: "valid", want: http.StatusNoContent, callback: true},
	{name: "workflow completed", fixture: "tlwebhook.workflow.completed.json", sign: "valid", want: http.StatusNoContent, callback: true},
	{name: "job failed, callback error", fixture: "tensorlake.document_ingestion.job.failed.json", sign: "valid", want: http.StatusInternalServerError, callback: true},
	{name: "forged signature", fixture: "tensorlake.document_ingestion.job.completed.json", sign: "forged", want: http.StatusUnauthorized},
	{name: "foreign secret", fixture: "tensorlake.sandbox.failed.json", sign: "foreign", want: http.StatusUnauthorized},
	{name: "stale timestamp", fixture: "tensorlake.document_ingestion.job.completed.json", sign: "stale", want: http.StatusUnauthorized},
	{name: "tampered body", fixture: "tensorlake.application.request.completed.json", sign: "tampered", want: http.StatusUnauthorized},
	{name: "wrong method", method: http.MethodPut, fixture: "tensorlake.document_ingestion.job.completed.json", sign: "valid", want: http.StatusMethodNotAllowed},
	{name: "oversized", body: `{"pad":"` + strings.Repeat("x", loadLimit) + `"}`, sign: "valid", want: http.StatusRequestEntityTooLarge},
	{name: "not an object", body: `[1,2,3]`, sign: "valid", want: http.StatusBadRequest},
}

const (
	loadDeliveries = 10_000
	loadClients    = 64
	loadLimit      = 4 << 10
)

// TestLoad sends 10,000 mixed valid and forged deliveries from 64
// concurrent clients to a real server. Every answer must be the expected
// one, each valid delivery must reach its callback exactly once and no
// other request any callback, and afterwards the goroutines and the heap
// must be back where they started.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test skipped in -short mode")
	}
	wh := advWebhook(t, advSecret)
	foreign := advWebhook(t, "whsec_"+base64.StdEncoding.EncodeToString([]byte("load-test-foreign-key-0123456789")))
	bodies := make([][]byte, len(loadKinds))
	for i, k := range loadKinds {
		if k.body != "" {
			bodies[i] = []byte(k.body)
			continue
		}
		b, err := os.ReadFile(fixtureFile(k.fixture))
		require.NoError(t, err)
		bodies[i] = b
	}

	// Everything the test itself keeps is allocated before the baseline.
	statuses := make([]int, loadDeliveries)
	errs := make([]error, loadDeliveries)
	calls := make(map[string]int, loadDeliveries)
	var callsMu sync.Mutex

	runtime.GC()
	baseGoroutines := runtime.NumGoroutine()
	baseHeap := heapInuseAfterGC()

	h, err := tl.NewHandler(advSecret, tl.WithMaxBodyBytes(loadLimit), tl.WithLogger(discardLogger()))
	require.NoError(t, err)
	record := func(ctx context.Context) {
		d, ok := tl.DeliveryFromContext(ctx)
		if !ok {
			d.ID = "<no delivery in context>"
		}
		callsMu.Lock()
		calls[d.ID]++
		callsMu.Unlock()
	}
	h.OnJobCompleted(func(ctx context.Context, _ *tl.JobCompleted) error { record(ctx); return nil })
	h.OnSandboxEvent(func(ctx context.Context, _ *tl.SandboxEvent) error { record(ctx); return nil })
	h.OnRequestEvent(func(ctx context.Context, _ *tl.RequestEvent) error { record(ctx); return nil })
	h.OnWorkflowCompleted(func(ctx context.Context, _ *tl.WorkflowCompleted) error { record(ctx); return nil })
	h.OnJobFailed(func(ctx context.Context, _ *tl.JobFailed) error {
		record(ctx)
		return errors.New("downstream unavailable")
	})
	h.OnUnknown(func(ctx context.Context, _ *tl.UnknownEvent) error { record(ctx); return nil })

	srv := httptest.NewServer(h)
	transport := &http.Transport{MaxIdleConns: loadClients, MaxIdleConnsPerHost: loadClients}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	stopPeak := make(chan struct{})
	peakCh := heapPeak(stopPeak)
	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	for range loadClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				statuses[i], errs[i] = loadSend(client, srv.URL, i, loadKinds[i%len(loadKinds)], bodies[i%len(loadKinds)], wh, foreign)
			}
		}()
	}
	for i := range loadDeliveries {
		work <- i
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	close(stopPeak)
	peak := <-peakCh

	srv.Close()
	transport.CloseIdleConnections()

	// Every answer as expected, every callback exactly for the valid ones.
	wrong := map[string]int{}
	valid := 0
	for i := range loadDeliveries {
		k := loadKinds[i%len(loadKinds)]
		if errs[i] != nil || statuses[i] != k.want {
			wrong[k.name]++
			if wrong[k.name] == 1 {
				t.Errorf("%s (delivery %d): status %d, error %v; want %d", k.name, i, statuses[i], errs[i], k.want)
			}
		}
		id := loadID(i)
		if k.callback {
			valid++
			assert.Equalf(t, 1, calls[id], "%s (delivery %d): callback runs", k.name, i)
		} else {
			assert.Zerof(t, calls[id], "%s (delivery %d): callback ran", k.name, i)
		}
	}
	assert.Empty(t, wrong, "kinds with unexpected answers")
	assert.Len(t, calls, valid, "callbacks ran for deliveries that were not sent valid")

	// Goroutines back to the baseline.
	deadline := time.Now().Add(time.Minute)
	for runtime.NumGoroutine() > baseGoroutines && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	goroutines := runtime.NumGoroutine()
	assert.LessOrEqual(t, goroutines, baseGoroutines, "goroutines leaked")

	// Heap back near the baseline: nothing per delivery is retained.
	h = nil
	after := heapInuseAfterGC()
	growth := int64(after) - int64(baseHeap)
	assert.Less(t, growth, int64(4<<20), "heap retained %d bytes after the load", growth)
	t.Logf("%d deliveries (%d valid) from %d clients in %v (%.0f/s); heap peak +%.1f MiB, after GC %+.2f MiB; goroutines %d -> %d",
		loadDeliveries, valid, loadClients, elapsed.Round(time.Millisecond), float64(loadDeliveries)/elapsed.Seconds(),
		(float64(peak)-float64(baseHeap))/(1<<20), float64(growth)/(1<<20), baseGoroutines, goroutines)
}

// loadID is the message id of delivery i.
func loadID(i int) string { return "msg_load_" + strconv.Itoa(i) }

// loadSend sends delivery i of kind k and returns the status.
func loadSend(client *http.Client, url string, i int, k loadKind, body []byte, wh, foreign svixSigner) (int, error) {
	id := loadID(i)
	ts := time.Now().Unix()
	var sig string
	var err error
	switch k.sign {
	case "valid":
		sig, err = wh.Sign(id, time.Unix(ts, 0), body)
	case "forged":
		sig = "v1," + strings.Repeat(strconv.Itoa(i%10), 43) + "="
	case "foreign":
		sig, err = foreign.Sign(id, time.Unix(ts, 0), body)
	case "stale":
		ts -= 3600
		sig, err = wh.Sign(id, time.Unix(ts, 0), body)
	case "tampered":
		sig, err = wh.Sign(id, time.Unix(ts, 0), append([]byte(" "), body...))
	}
	if err != nil {
		return 0, err
	}
	method := k.method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequest(method, url, strings.NewReader(string(body)))
	if err != nil {
		return 0, err
	}
	req.Header.Set(tl.HeaderSvixID, id)
	req.Header.Set(tl.HeaderSvixTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(tl.HeaderSvixSignature, sig)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// svixSigner is the part of svix's Webhook the load test uses.
type svixSigner interface {
	Sign(id string, ts time.Time, payload []byte) (string, error)
}
