package riverinbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/riverinbox"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// storedArgs returns the stored arguments of every inbox job, by message id,
// decoded from the args column's JSON text as River UI reads it.
func storedArgs[TTx any](tb testing.TB, b *backend[TTx]) map[string]map[string]any {
	tb.Helper()
	out := map[string]map[string]any{}
	for _, a := range storedArgsText(tb, b) {
		var m map[string]any
		if err := json.Unmarshal([]byte(a), &m); err != nil {
			tb.Fatalf("args %s: %v", a, err)
		}
		id, _ := m["id"].(string)
		out[id] = m
	}
	return out
}

// storedArgsText returns the args column's JSON text of every inbox job.
func storedArgsText[TTx any](tb testing.TB, b *backend[TTx]) []string {
	tb.Helper()
	col := "args::text"
	if b.name == "sqlite" {
		col = "json(args)"
	}
	texts, err := b.pairs(context.Background(), "select "+col+", 1 from river_job where kind = '"+riverinbox.Kind+"'")
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for text := range texts {
		out = append(out, text)
	}
	return out
}

// TestJobsReadable: a job's stored arguments, as River UI shows them, carry
// the message id, the event type and the event id in clear text and the
// payload as a JSON object, while the worker's callback receives the exact
// bytes that were verified, odd formatting and U+0000 included.
func TestJobsReadable(t *testing.T) {
	both(t, testJobsReadable[pgx.Tx], testJobsReadable[*sql.Tx])
}

func testJobsReadable[TTx any](t *testing.T, b *backend[TTx]) {
	var mu sync.Mutex
	raw := map[string]string{} // message id -> bytes the callback received
	s := newSetup(t, b, 2, func(h *tlwebhook.Handler) {
		registerEffects(b, nil)(h)
		h.OnUnknown(func(ctx context.Context, ev *tlwebhook.UnknownEvent) error {
			d, _ := tlwebhook.DeliveryFromContext(ctx)
			mu.Lock()
			raw[d.ID] = string(ev.Raw)
			mu.Unlock()
			return nil
		})
	})
	odd := []byte("{ \"event_type\" : \"acme.widget.made\",\n\t\"n\": 1.50, \"s\": \"a\\u0000b \\u00e9\", \"html\": \"<b>&</b>\" }")
	deliveries := []struct {
		id, typ, eventID string
		body             []byte
	}{
		{tlwebhooktest.NewMessageID(), string(tlwebhook.EventTypeSandboxRunning), "evt_readable", sandboxPayload("evt_readable")},
		{tlwebhooktest.NewMessageID(), string(tlwebhook.EventTypeJobCompleted), "", jobPayload("parse_readable")},
		{tlwebhooktest.NewMessageID(), "acme.widget.made", "", odd},
	}
	for _, d := range deliveries {
		if got := s.serve(d.id, d.body); got != http.StatusNoContent {
			t.Fatalf("%s: status %d, want 204", d.typ, got)
		}
	}
	// River UI's job list shows the first hundred characters or so of the
	// args text: the event type and the message id must be among them.
	for _, text := range storedArgsText(t, b) {
		for _, d := range deliveries {
			if strings.Contains(text, d.id) {
				if i := strings.Index(text, `"`+d.typ+`"`); i < 0 || i > 100 {
					t.Errorf("event type %s at %d in the args %.200s..., want it in the first 100 characters", d.typ, i, text)
				}
				if i := strings.Index(text, d.id); i > 100 {
					t.Errorf("message id at %d in the args %.200s..., want it in the first 100 characters", i, text)
				}
			}
		}
	}
	args := storedArgs(t, b)
	for _, d := range deliveries {
		a, ok := args[d.id]
		if !ok {
			t.Fatalf("no job whose args have id %q in clear text; jobs: %v", d.id, args)
		}
		if a["event"] != d.typ {
			t.Errorf("%s: args event %v, want %q", d.id, a["event"], d.typ)
		}
		if d.eventID != "" && a["event_id"] != d.eventID {
			t.Errorf("%s: args event_id %v, want %q", d.id, a["event_id"], d.eventID)
		}
		payload, ok := a["payload"].(map[string]any)
		if !ok {
			t.Errorf("%s: args payload is %T, want a JSON object", d.id, a["payload"])
			continue
		}
		if d.eventID != "" && payload["event_id"] != d.eventID {
			t.Errorf("%s: payload event_id %v, want %q", d.id, payload["event_id"], d.eventID)
		}
	}
	if p := args[deliveries[2].id]["payload"].(map[string]any); p["s"] != "a\uFFFDb \u00e9" || p["html"] != "<b>&</b>" {
		t.Errorf("readable copy of the odd payload: %v", p)
	}
	s.start(t)
	waitFor(t, 30*time.Second, b.allCompleted(t, len(deliveries)))
	mu.Lock()
	defer mu.Unlock()
	if got := raw[deliveries[2].id]; got != string(odd) {
		t.Fatalf("the callback received %q, want the verified bytes %q", got, odd)
	}
}

// nulEffects records, for each delivery run, its idempotency key quoted
// (a text column holds no U+0000).
func nulEffects[TTx any](b *backend[TTx]) func(*tlwebhook.Handler) {
	return func(h *tlwebhook.Handler) {
		h.OnSandboxEvent(func(ctx context.Context, ev *tlwebhook.SandboxEvent) error {
			tx, _ := riverinbox.TxFromContext[TTx](ctx)
			d, _ := tlwebhook.DeliveryFromContext(ctx)
			if d.EventID != ev.EventID {
				return fmt.Errorf("delivery event id %q, event's %q", d.EventID, ev.EventID)
			}
			return b.execTx(ctx, tx, "insert into effects (key, delivery_id, pid) values ("+b.ph(1)+", "+b.ph(2)+", 0)",
				fmt.Sprintf("%q", d.IdempotencyKey()), d.ID)
		})
	}
}

// TestNulInEventIDAmongConcurrent: ten signed deliveries whose event_id
// holds U+0000 (which PostgreSQL's jsonb refuses), among 200 sent at once
// (two among 40 on SQLite), are all recorded and processed once, and cost
// their batch-mates nothing.
func TestNulInEventIDAmongConcurrent(t *testing.T) {
	both(t, testNulInEventID[pgx.Tx], testNulInEventID[*sql.Tx])
}

func testNulInEventID[TTx any](t *testing.T, b *backend[TTx]) {
	s := newSetup(t, b, 4, nulEffects(b))
	n := 200
	if b.name == "sqlite" {
		n = 40 // one connection: every insert and job waits its turn
	}
	statuses := make([]int, n)
	keys := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		keys[i] = fmt.Sprintf("evt_concurrent_%03d", i)
		body := sandboxPayload(keys[i])
		if i%20 == 7 {
			keys[i] = fmt.Sprintf("evt_nul_%03d\x00", i)
			body = sandboxPayload(keys[i]) // json.Marshal writes U+0000 as \u0000
			if !strings.Contains(string(body), `\u0000"`) {
				t.Fatalf("payload %s does not hold U+0000 as a JSON escape", body)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = s.serve(tlwebhooktest.NewMessageID(), body)
		}()
	}
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusNoContent {
			t.Errorf("delivery %q: status %d, want 204", keys[i], st)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	s.start(t)
	waitFor(t, 60*time.Second, b.allCompleted(t, n))
	effects := b.effects(t)
	for _, k := range keys {
		if q := fmt.Sprintf("%q", k); effects[q] != 1 {
			t.Errorf("key %s: %d effects, want 1", q, effects[q])
		}
	}
}

// TestRefusedRowCostsOnlyItself: when the database refuses some rows of a
// batch, only their deliveries are answered 503; their batch-mates are
// recorded (204). A row whose readable payload copy alone is refused is
// recorded without it.
func TestRefusedRowCostsOnlyItself(t *testing.T) {
	b := postgresBackend(t)
	ctx := context.Background()
	// The faults, written as constraints the database checks.
	if err := b.exec(ctx, `alter table river_job add constraint refuse_row check (args->>'key' not like 'evt_refused_%')`); err != nil {
		t.Fatal(err)
	}
	if err := b.exec(ctx, `alter table river_job add constraint refuse_copy check (args->'payload'->>'event_id' is null or args->'payload'->>'event_id' not like 'evt_nocopy_%')`); err != nil {
		t.Fatal(err)
	}
	s := newSetup(t, b, 4, nil)
	const n = 200
	statuses := make([]int, n)
	keys := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		switch i % 20 {
		case 3:
			keys[i] = fmt.Sprintf("evt_refused_%03d", i)
		case 11:
			keys[i] = fmt.Sprintf("evt_nocopy_%03d", i)
		default:
			keys[i] = fmt.Sprintf("evt_plain_%03d", i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = s.serve(tlwebhooktest.NewMessageID(), sandboxPayload(keys[i]))
		}()
	}
	wg.Wait()
	args := map[string]map[string]any{}
	for _, a := range storedArgs(t, b) {
		args[a["key"].(string)] = a
	}
	refused := 0
	for i, k := range keys {
		want := http.StatusNoContent
		if strings.HasPrefix(k, "evt_refused_") {
			want = http.StatusServiceUnavailable
			refused++
		}
		if statuses[i] != want {
			t.Errorf("delivery %s: status %d, want %d", k, statuses[i], want)
		}
		a, recorded := args[k]
		switch {
		case want != http.StatusNoContent:
			if recorded {
				t.Errorf("delivery %s answered %d is recorded", k, statuses[i])
			}
		case !recorded:
			t.Errorf("delivery %s answered 204 is not recorded", k)
		case strings.HasPrefix(k, "evt_nocopy_"):
			if _, ok := a["payload"]; ok || a["raw_payload"] == nil {
				t.Errorf("delivery %s: args %v, want the exact payload without the refused copy", k, a)
			}
		default:
			if _, ok := a["payload"].(map[string]any); !ok {
				t.Errorf("delivery %s: no readable payload in %v", k, a)
			}
		}
	}
	if len(args) != n-refused {
		t.Errorf("%d jobs recorded, want %d", len(args), n-refused)
	}
}

// observations records what a Handler's Observer is told.
type observations struct {
	mu  sync.Mutex
	all []tlwebhook.Observation
}

func (o *observations) Observe(_ context.Context, obs tlwebhook.Observation) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all = append(o.all, obs)
}

func (o *observations) of(outcome tlwebhook.DeliveryOutcome) []tlwebhook.Observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []tlwebhook.Observation
	for _, obs := range o.all {
		if obs.Outcome == outcome {
			out = append(out, obs)
		}
	}
	return out
}

// TestDiscardedReported: the Observer is told DeliveryDiscarded once for a
// delivery whose callback failed on every attempt (its job discarded) and
// once for one that returned Permanent (its job cancelled), never for one
// that succeeded after a failure.
func TestDiscardedReported(t *testing.T) {
	both(t, testDiscardedReported[pgx.Tx], testDiscardedReported[*sql.Tx])
}

func testDiscardedReported[TTx any](t *testing.T, b *backend[TTx]) {
	obs := &observations{}
	var mu sync.Mutex
	tries := map[string]int{}
	fails := func(ctx context.Context, ev *tlwebhook.SandboxEvent) error {
		mu.Lock()
		tries[ev.EventID]++
		n := tries[ev.EventID]
		mu.Unlock()
		switch {
		case ev.EventID == "evt_always_fails":
			return errors.New("always fails")
		case ev.EventID == "evt_permanent":
			return tlwebhook.Permanent(errors.New("cannot ever be handled"))
		case n == 1:
			return errors.New("fails once")
		}
		return nil
	}
	workers := newSetupWith(t, b, 2, []tlwebhook.HandlerOption{tlwebhook.WithObserver(obs)},
		[]riverinbox.Option{riverinbox.WithMaxAttempts(3)},
		func(h *tlwebhook.Handler) { h.OnSandboxEvent(fails) })
	ids := map[string]string{}
	for _, ev := range []string{"evt_always_fails", "evt_permanent", "evt_fails_once"} {
		ids[ev] = tlwebhooktest.NewMessageID()
		if got := workers.serve(ids[ev], sandboxPayload(ev)); got != http.StatusNoContent {
			t.Fatalf("%s: status %d", ev, got)
		}
	}
	workers.start(t)
	waitFor(t, 30*time.Second, func() string {
		st := b.jobStates(t)
		if st["discarded"] == 1 && st["cancelled"] == 1 && st["completed"] == 1 {
			return ""
		}
		return fmt.Sprintf("want one job discarded, one cancelled, one completed; have %v", st)
	})
	discarded := obs.of(tlwebhook.DeliveryDiscarded)
	got := map[string]int{}
	for _, o := range discarded {
		got[o.Delivery.EventID]++
		if o.EventType != tlwebhook.EventTypeSandboxRunning || o.Delivery.ID != ids[o.Delivery.EventID] || o.Err == nil {
			t.Errorf("discarded observation %+v: want type %s, id %s and the error", o, tlwebhook.EventTypeSandboxRunning, ids[o.Delivery.EventID])
		}
	}
	if len(discarded) != 2 || got["evt_always_fails"] != 1 || got["evt_permanent"] != 1 {
		t.Fatalf("discarded observations per event %v, want evt_always_fails and evt_permanent once each", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if tries["evt_always_fails"] != 3 || tries["evt_permanent"] != 1 || tries["evt_fails_once"] != 2 {
		t.Fatalf("attempts per event %v, want 3, 1 and 2", tries)
	}
}
