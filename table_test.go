package tlwebhook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	tl "github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// TestRegistrationPrecedence checks which callback runs when several could:
// the struct's own, else the catch-all; exactly one per delivery.
func TestRegistrationPrecedence(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	h := quietHandler(t, secret)
	var mu sync.Mutex
	var ran []string
	rec := func(name string) { mu.Lock(); ran = append(ran, name); mu.Unlock() }
	tl.On(h, func(_ context.Context, ev *tl.JobCompleted) error { rec("On[JobCompleted] " + ev.JobID); return nil })
	h.OnAny(func(_ context.Context, ev tl.Event) error { rec("OnAny " + string(ev.Type())); return nil })
	srv := httptest.NewServer(h)
	defer srv.Close()

	cases := []struct {
		typ  tl.EventType
		want string
	}{
		{tl.EventTypeJobCompleted, "On[JobCompleted] parse_XXX"},
		{tl.EventTypeJobCreated, "OnAny " + string(tl.EventTypeJobCreated)},
		{tl.EventTypeSandboxFailed, "OnAny " + string(tl.EventTypeSandboxFailed)},
	}
	for _, c := range cases {
		t.Run(string(c.typ), func(t *testing.T) {
			ran = nil
			resp := post(t, srv, secret, tlwebhooktest.Sample(c.typ))
			assert.Equal(t, http.StatusNoContent, resp.StatusCode)
			assert.Equal(t, []string{c.want}, ran)
		})
	}

	t.Run("OnJobCompleted replaces On[JobCompleted]: one slot", func(t *testing.T) {
		ran = nil
		h.OnJobCompleted(func(context.Context, *tl.JobCompleted) error { rec("OnJobCompleted"); return nil })
		post(t, srv, secret, tlwebhooktest.Sample(tl.EventTypeJobCompleted))
		assert.Equal(t, []string{"OnJobCompleted"}, ran)
	})
	t.Run("nil removes: the catch-all takes over", func(t *testing.T) {
		ran = nil
		h.OnJobCompleted(nil)
		post(t, srv, secret, tlwebhooktest.Sample(tl.EventTypeJobCompleted))
		assert.Equal(t, []string{"OnAny " + string(tl.EventTypeJobCompleted)}, ran)
	})
	t.Run("an unknown event reaches OnUnknown before OnAny", func(t *testing.T) {
		ran = nil
		h.OnUnknown(func(context.Context, *tl.UnknownEvent) error { rec("OnUnknown"); return nil })
		post(t, srv, secret, []byte(`{"event_type":"tensorlake.project.renamed","event_id":"e1"}`))
		assert.Equal(t, []string{"OnUnknown"}, ran)
	})
	t.Run("OnAny(nil) removes the catch-all", func(t *testing.T) {
		ran = nil
		h.OnAny(nil)
		resp := post(t, srv, secret, tlwebhooktest.Sample(tl.EventTypeJobCreated))
		assert.Equal(t, http.StatusNoContent, resp.StatusCode)
		assert.Empty(t, ran)
	})
}

// TestOnPanicsForForeignTypes checks that On refuses a struct that is not an
// event of the table.
func TestOnPanicsForForeignTypes(t *testing.T) {
	h := quietHandler(t, tlwebhooktest.NewSecret())
	type notAnEvent struct{ tl.SandboxEvent }
	assert.PanicsWithValue(t, "tlwebhook.On: *tlwebhook_test.notAnEvent is not an event struct of this package", func() {
		tl.On(h, func(context.Context, *notAnEvent) error { return nil })
	})
}

// TestEventKindsDescribeTheTable checks EventKinds against the wire rules:
// every listed type is in EventTypes, callbacks exist, families have a
// prefix their types start with.
func TestEventKindsDescribeTheTable(t *testing.T) {
	var types []tl.EventType
	for _, k := range tl.EventKinds() {
		for _, et := range k.Types {
			types = append(types, et)
			if k.Prefix != "" {
				assert.True(t, strings.HasPrefix(string(et), k.Prefix), "%s in family %s", et, k.Prefix)
			}
		}
	}
	assert.Equal(t, tl.EventTypes(), types)
}

// TestEventKindRegister registers one function on every row of the table
// through EventKind.Register: each sample reaches it as its row's struct,
// and a kind that does not come from EventKinds panics.
func TestEventKindRegister(t *testing.T) {
	secret := tlwebhooktest.NewSecret()
	h := quietHandler(t, secret)
	got := map[tl.EventType]string{}
	for _, k := range tl.EventKinds() {
		k.Register(h, func(_ context.Context, ev tl.Event) error {
			got[ev.Type()] = k.Struct
			return nil
		})
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, k := range tl.EventKinds() {
		for _, typ := range k.Types {
			assert.Equal(t, http.StatusNoContent, post(t, srv, secret, tlwebhooktest.Sample(typ)).StatusCode)
			assert.Equal(t, k.Struct, got[typ], "%s reaches the callback of its row", typ)
		}
	}
	assert.Panics(t, func() { tl.EventKind{Struct: "JobCreated"}.Register(h, nil) })
}
