package tlwebhook_test

import (
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tl "github.com/tlwebhook/tlwebhook"
)

// rawData returns the data member of an envelope payload, byte for byte.
func envelopeRawData(t *testing.T, payload []byte) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(payload, &m))
	d, ok := m["data"]
	require.True(t, ok, "payload has no data")
	return d
}

func TestUnknownEnvelopesKeepEnvelopeAndData(t *testing.T) {
	tests := []struct {
		file     string
		want     tl.Envelope
		comment  string
		breaking bool
	}{
		{
			file: "unknown_event_type.json",
			want: tl.Envelope{
				EventID: "evt_019f95fb-7f33-7000-8000-00000000000d", EventType: "tensorlake.project.renamed",
				EventVersion: 1, OccurredAt: utcAt(2026, 8, 1, 0, 0, 0, 0), ProjectID: "project_123",
				SourceID: "src_01k0example", SourceRevision: "5", SourceOrdinal: 0,
			},
		},
		{
			file: "lifecycle_bad_version.json",
			want: tl.Envelope{
				EventID: "evt_019f95fb-7f33-7000-8000-00000000000e", EventType: tl.EventTypeSandboxFailed,
				EventVersion: 0, OccurredAt: utcAt(2026, 8, 1, 0, 0, 0, 0), ProjectID: "project_123",
				SourceID: "src_01k0example", SourceRevision: "81248", SourceOrdinal: 0,
			},
			comment:  `event_version "two" does not decode and stays zero`,
			breaking: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			payload := fixtureBytes(t, tc.file)
			ev, err := tl.ParseEvent(payload)
			if tc.breaking {
				require.ErrorIs(t, err, tl.ErrSchemaDrift)
			} else {
				require.NoError(t, err)
			}
			u := eventAs[*tl.UnknownEvent](t, ev)
			assert.True(t, tc.want.OccurredAt.Equal(u.OccurredAt), u.OccurredAt)
			got := u.Envelope
			got.OccurredAt = tc.want.OccurredAt
			assert.Equal(t, tc.want, got, tc.comment)
			assert.Equal(t, tc.want.EventType, u.Type())
			assert.Equal(t, envelopeRawData(t, payload), u.Data, "Data is the raw data member")
			assert.Equal(t, payload, []byte(u.Raw))
		})
	}
}

// envelopeJSON builds a lifecycle payload of type et and version (raw
// JSON) around data (raw JSON).
func envelopeJSON(et, version, data string) []byte {
	return []byte(fmt.Sprintf(`{"event_id":"evt_test","event_type":%q,"event_version":%s,`+
		`"occurred_at":"2026-07-24T21:15:15.123Z","project_id":"project_123","source_id":"src_1",`+
		`"source_revision":"42","source_ordinal":3,"data":%s}`, et, version, data))
}

const (
	goodSandboxData = `{"previous_status":"running","sandbox":{"id":"sb_1","name":null,"type":"named",` +
		`"image":null,"generation_id":3,"status":"running","outcome":null,"outcome_reason":null,` +
		`"snapshot_id":"snap_9","created_at":"2026-07-24T20:10:00Z","resources":{"cpus":1.5,` +
		`"memory_mb":2048,"disk_mb":4096,"gpu_count":0,"gpu_model":null}}}`
	badSandboxData = `{"sandbox":{"id":"sb_1","resources":{"cpus":"many"}}}`
	goodAppData    = `{"previous_version":null,"previous_state":null,"application":{"name":"a",` +
		`"version":"v3","state":"active","disabled_reason":null,"created_at":"2026-07-20T08:00:00Z"}}`
	goodRequestData = `{"application":{"name":"a","version":"v3"},"request":{"id":"r_1",` +
		`"status":"created","failure_reason":null,"created_at":"2026-07-24T21:15:00Z","finished_at":null}}`
)

func TestParseEnvelopeDispatchByFamily(t *testing.T) {
	// A new type of a family decodes as the family (additive drift); one
	// whose data does not fit, or a version above 1, is breaking drift: an
	// UnknownEvent with an error wrapping ErrSchemaDrift. Another family
	// is simply unknown.
	tests := []struct {
		name     string
		payload  []byte
		want     tl.Event
		breaking bool
	}{
		{"new sandbox type", envelopeJSON("tensorlake.sandbox.snapshotted", "1", goodSandboxData), (*tl.SandboxEvent)(nil), false},
		{"new application type", envelopeJSON("tensorlake.application.archived", "1", goodAppData), (*tl.ApplicationEvent)(nil), false},
		{"new request type", envelopeJSON("tensorlake.application.request.cancelled", "1", goodRequestData), (*tl.RequestEvent)(nil), false},
		{"request type is not an application event", envelopeJSON("tensorlake.application.request.created", "1", goodRequestData), (*tl.RequestEvent)(nil), false},
		{"new sandbox type, data does not fit", envelopeJSON("tensorlake.sandbox.snapshotted", "1", badSandboxData), (*tl.UnknownEvent)(nil), true},
		{"new application type, data does not fit", envelopeJSON("tensorlake.application.archived", "1", `{"application":[1]}`), (*tl.UnknownEvent)(nil), true},
		{"new request type, data does not fit", envelopeJSON("tensorlake.application.request.cancelled", "1", `"text"`), (*tl.UnknownEvent)(nil), true},
		{"version 2, data fits", envelopeJSON("tensorlake.sandbox.failed", "2", goodSandboxData), (*tl.UnknownEvent)(nil), true},
		{"version 2, data does not fit", envelopeJSON("tensorlake.sandbox.failed", "2", badSandboxData), (*tl.UnknownEvent)(nil), true},
		{"version 2 request, data does not fit", envelopeJSON("tensorlake.application.request.failed", "2", `{"request":{"finished_at":7}}`), (*tl.UnknownEvent)(nil), true},
		{"version two", envelopeJSON("tensorlake.sandbox.created", `"two"`, goodSandboxData), (*tl.UnknownEvent)(nil), true},
		{"version 1.5", envelopeJSON("tensorlake.sandbox.created", `1.5`, badSandboxData), (*tl.UnknownEvent)(nil), true},
		{"version null", envelopeJSON("tensorlake.application.created", `null`, `{"application":7}`), (*tl.UnknownEvent)(nil), true},
		{"other family", envelopeJSON("tensorlake.project.renamed", "1", goodSandboxData), (*tl.UnknownEvent)(nil), false},
		{"prefix without dot", envelopeJSON("tensorlake.sandboxes.created", "1", goodSandboxData), (*tl.UnknownEvent)(nil), false},
		{"empty type", envelopeJSON("", "1", goodSandboxData), (*tl.UnknownEvent)(nil), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := tl.ParseEvent(tc.payload)
			if tc.breaking {
				require.ErrorIs(t, err, tl.ErrSchemaDrift)
			} else {
				require.NoError(t, err, "a new type of a family is not an error")
			}
			require.IsType(t, tc.want, ev)
			var et struct {
				EventType tl.EventType `json:"event_type"`
			}
			require.NoError(t, json.Unmarshal(tc.payload, &et))
			assert.Equal(t, et.EventType, ev.Type())
			if u, ok := ev.(*tl.UnknownEvent); ok {
				assert.Equal(t, "evt_test", u.EventID)
				assert.Equal(t, tl.Revision("42"), u.SourceRevision)
				assert.Equal(t, int64(3), u.SourceOrdinal)
				assert.Equal(t, envelopeRawData(t, tc.payload), u.Data)
				return
			}
			out, err := json.Marshal(ev)
			require.NoError(t, err)
			assert.Empty(t, jsonDiff("", jsonTree(t, tc.payload), jsonTree(t, out)))
		})
	}
}

func TestEnumerationsAcceptNewValues(t *testing.T) {
	sb := strings.NewReplacer(`"status":"running"`, `"status":"hibernating"`,
		`"type":"named"`, `"type":"pooled"`,
		`"outcome":null,"outcome_reason":null`, `"outcome":"partial","outcome_reason":"cosmic_ray"`,
		`"previous_status":"running"`, `"previous_status":"migrating"`).Replace(goodSandboxData)
	ev, err := tl.ParseEvent(envelopeJSON("tensorlake.sandbox.terminated", "1", sb))
	require.NoError(t, err)
	s := eventAs[*tl.SandboxEvent](t, ev)
	assert.Equal(t, tl.SandboxStatus("hibernating"), s.Data.Sandbox.Status)
	assert.Equal(t, tl.SandboxType("pooled"), s.Data.Sandbox.Type)
	require.NotNil(t, s.Data.Sandbox.Outcome)
	assert.Equal(t, tl.SandboxOutcome("partial"), *s.Data.Sandbox.Outcome)
	require.NotNil(t, s.Data.Sandbox.OutcomeReason)
	assert.Equal(t, tl.SandboxOutcomeReason("cosmic_ray"), *s.Data.Sandbox.OutcomeReason)
	require.NotNil(t, s.Data.PreviousStatus)
	assert.Equal(t, tl.SandboxStatus("migrating"), *s.Data.PreviousStatus)

	app := strings.Replace(goodAppData, `"state":"active"`, `"state":"archived"`, 1)
	ev, err = tl.ParseEvent(envelopeJSON(string(tl.EventTypeApplicationUpdated), "1", app))
	require.NoError(t, err)
	assert.Equal(t, tl.ApplicationState("archived"), eventAs[*tl.ApplicationEvent](t, ev).Data.Application.State)

	req := strings.NewReplacer(`"status":"created"`, `"status":"paused"`,
		`"failure_reason":null`, `"failure_reason":"solar_flare"`).Replace(goodRequestData)
	ev, err = tl.ParseEvent(envelopeJSON(string(tl.EventTypeRequestFailed), "1", req))
	require.NoError(t, err)
	r := eventAs[*tl.RequestEvent](t, ev)
	assert.Equal(t, tl.RequestStatus("paused"), r.Data.Request.Status)
	require.NotNil(t, r.Data.Request.FailureReason)
	assert.Equal(t, tl.FailureReason("solar_flare"), *r.Data.Request.FailureReason)
}

func TestSourceRevisionIsExact(t *testing.T) {
	tests := []struct {
		name, raw string // raw JSON of source_revision
		want      tl.Revision
	}{
		{"2^128+1 string", `"340282366920938463463374607431768211457"`, "340282366920938463463374607431768211457"},
		{"2^64+1 string", `"18446744073709551617"`, "18446744073709551617"},
		{"leading zeros kept", `"000081247"`, "000081247"},
		{"2^128+1 number", `340282366920938463463374607431768211457`, "340282366920938463463374607431768211457"},
		{"60 digits number", `123456789012345678901234567890123456789012345678901234567890`, "123456789012345678901234567890123456789012345678901234567890"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload := strings.Replace(string(envelopeJSON(string(tl.EventTypeSandboxRunning), "1", goodSandboxData)),
				`"source_revision":"42"`, `"source_revision":`+tc.raw, 1)
			ev, err := tl.ParseEvent([]byte(payload))
			require.NoError(t, err)
			s := eventAs[*tl.SandboxEvent](t, ev)
			assert.Equal(t, tc.want, s.SourceRevision)
			out, err := json.Marshal(s)
			require.NoError(t, err)
			var back struct {
				SourceRevision string `json:"source_revision"`
			}
			require.NoError(t, json.Unmarshal(out, &back), "source_revision marshals as a string")
			assert.Equal(t, string(tc.want), back.SourceRevision)
		})
	}

	t.Run("fixture", func(t *testing.T) {
		payload := fixtureBytes(t, "tensorlake.application.request.completed.json")
		ev, err := tl.ParseEvent(payload)
		require.NoError(t, err)
		r := eventAs[*tl.RequestEvent](t, ev)
		want, ok := new(big.Int).SetString("340282366920938463463374607431768211457", 10)
		require.True(t, ok)
		got, ok := new(big.Int).SetString(string(r.SourceRevision), 10)
		require.True(t, ok)
		assert.Zero(t, want.Cmp(got))
		assert.Positive(t, got.Cmp(new(big.Int).Lsh(big.NewInt(1), 64)), "the fixture exceeds 2^64")
	})
}

func TestFractionalTimesRoundTrip(t *testing.T) {
	tests := []struct {
		file   string
		nanos  int
		onWire string // the marshalled occurred_at
	}{
		{"tensorlake.sandbox.terminated.json", 123456789, "2026-07-24T21:10:00.123456789Z"},
		{"tensorlake.sandbox.suspended.json", 1000, "2026-07-24T20:40:00.000001Z"},
		{"tensorlake.sandbox.created.json", 500_000_000, "2026-07-24T20:10:00.5Z"},
		{"tensorlake.sandbox.running.json", 250_000_000, "2026-07-24T20:10:03.25Z"}, // sent as .250Z
		{"tensorlake.application.created.json", 42_000_000, "2026-07-20T08:00:00.042Z"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			ev, err := tl.ParseEvent(fixtureBytes(t, tc.file))
			require.NoError(t, err)
			var occurred int
			switch e := ev.(type) {
			case *tl.SandboxEvent:
				occurred = e.OccurredAt.Nanosecond()
			case *tl.ApplicationEvent:
				occurred = e.OccurredAt.Nanosecond()
			default:
				t.Fatalf("unexpected %T", ev)
			}
			assert.Equal(t, tc.nanos, occurred)
			out, err := json.Marshal(ev)
			require.NoError(t, err)
			var back struct {
				OccurredAt string `json:"occurred_at"`
			}
			require.NoError(t, json.Unmarshal(out, &back))
			assert.Equal(t, tc.onWire, back.OccurredAt)
		})
	}
}

func TestNullFieldsAreNilPointers(t *testing.T) {
	ev, err := tl.ParseEvent(fixtureBytes(t, "tensorlake.sandbox.created.json"))
	require.NoError(t, err)
	s := eventAs[*tl.SandboxEvent](t, ev)
	assert.Nil(t, s.Data.PreviousStatus)
	assert.Nil(t, s.Data.Sandbox.Name)
	assert.Nil(t, s.Data.Sandbox.Image)
	assert.Nil(t, s.Data.Sandbox.Outcome)
	assert.Nil(t, s.Data.Sandbox.OutcomeReason)
	assert.Nil(t, s.Data.Sandbox.SnapshotID)
	assert.Nil(t, s.Data.Sandbox.Resources.GPUModel)

	ev, err = tl.ParseEvent(fixtureBytes(t, "tensorlake.application.created.json"))
	require.NoError(t, err)
	a := eventAs[*tl.ApplicationEvent](t, ev)
	assert.Nil(t, a.Data.PreviousVersion)
	assert.Nil(t, a.Data.PreviousState)
	assert.Nil(t, a.Data.Application.DisabledReason)

	ev, err = tl.ParseEvent(fixtureBytes(t, "tensorlake.application.request.created.json"))
	require.NoError(t, err)
	r := eventAs[*tl.RequestEvent](t, ev)
	assert.Nil(t, r.Data.Request.FailureReason)
	assert.Nil(t, r.Data.Request.FinishedAt)

	// The same fields, set, are non-nil (so the checks above can fail).
	ev, err = tl.ParseEvent(fixtureBytes(t, "tensorlake.sandbox.running.json"))
	require.NoError(t, err)
	s = eventAs[*tl.SandboxEvent](t, ev)
	assert.NotNil(t, s.Data.PreviousStatus)
	assert.NotNil(t, s.Data.Sandbox.Name)
	assert.NotNil(t, s.Data.Sandbox.Image)
	assert.NotNil(t, s.Data.Sandbox.Resources.GPUModel)
}

// randomRevision returns a decimal of 1 to 60 significant digits, possibly
// zero, with up to 3 leading zeros when pad is set.
func randomRevision(rng *rand.Rand, pad bool) string {
	var b strings.Builder
	if pad {
		for range rng.IntN(4) {
			b.WriteByte('0')
		}
	}
	if rng.IntN(20) == 0 {
		b.WriteByte('0')
		return b.String()
	}
	n := 1 + rng.IntN(60)
	b.WriteByte(byte('1' + rng.IntN(9)))
	for range n - 1 {
		b.WriteByte(byte('0' + rng.IntN(10)))
	}
	return b.String()
}

func TestRevisionCompareMatchesBigInt(t *testing.T) {
	rng := rand.New(rand.NewPCG(20260724, 81247))
	bigOf := func(s string) *big.Int {
		n, ok := new(big.Int).SetString(s, 10)
		require.True(t, ok, s)
		return n
	}
	for i := range 5000 {
		a := randomRevision(rng, rng.IntN(2) == 0)
		var b string
		switch rng.IntN(4) {
		case 0: // same number, other padding
			b = strings.Repeat("0", rng.IntN(4)) + strings.TrimLeft(a, "0")
			if strings.TrimLeft(a, "0") == "" {
				b += "0"
			}
		case 1: // neighbour
			delta := big.NewInt(int64(rng.IntN(3) - 1))
			n := new(big.Int).Add(bigOf(a), delta)
			if n.Sign() < 0 {
				n.SetInt64(0)
			}
			b = n.String()
		default:
			b = randomRevision(rng, rng.IntN(2) == 0)
		}
		want := bigOf(a).Cmp(bigOf(b))
		got := tl.Revision(a).Compare(tl.Revision(b))
		require.Equalf(t, want, got, "case %d: Compare(%s, %s)", i, a, b)
		require.Equalf(t, -want, tl.Revision(b).Compare(tl.Revision(a)), "case %d: antisymmetry", i)
		require.True(t, tl.Revision(a).Valid())
	}
}

func TestRevisionValidAndInvalidOrder(t *testing.T) {
	tests := []struct {
		a, b tl.Revision
		want int
	}{
		{"9", "10", -1},
		{"10", "9", 1},
		{"007", "7", 0},
		{"0", "000", 0},
		{"18446744073709551616", "18446744073709551615", 1},
		{"", "0", -1},    // invalid before valid
		{"12a", "1", -1}, // invalid before valid
		{"-5", "0", -1},
		{"1", " 1", 1},
		{"abc", "abd", -1}, // invalid among themselves: as strings
		{"", "", 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q vs %q", tc.a, tc.b), func(t *testing.T) {
			assert.Equal(t, tc.want, tc.a.Compare(tc.b))
			assert.Equal(t, -tc.want, tc.b.Compare(tc.a))
		})
	}
	for _, r := range []tl.Revision{"", "-1", "1.0", "1e3", " 1", "0x10", "١٢"} {
		assert.False(t, r.Valid(), "%q", r)
	}
	for _, r := range []tl.Revision{"0", "00", "340282366920938463463374607431768211457"} {
		assert.True(t, r.Valid(), "%q", r)
	}
}

func TestEnvelopeCompareAndBefore(t *testing.T) {
	env := func(rev string, ord int64) *tl.Envelope {
		return &tl.Envelope{SourceID: "src_1", SourceRevision: tl.Revision(rev), SourceOrdinal: ord}
	}
	tests := []struct {
		name string
		a, b *tl.Envelope
		want int
	}{
		{"same position", env("81247", 0), env("81247", 0), 0},
		{"same position, padded revision", env("0081247", 2), env("81247", 2), 0},
		{"lower ordinal", env("81247", 0), env("81247", 1), -1},
		{"higher ordinal", env("81247", 5), env("81247", 1), 1},
		{"revision beats ordinal", env("81248", 0), env("81247", 9), 1},
		{"numeric not lexical", env("9", 0), env("10", 0), -1},
		{"beyond 2^64", env("18446744073709551617", 0), env("18446744073709551616", 7), 1},
		{"beyond 2^128", env("340282366920938463463374607431768211457", 0), env("340282366920938463463374607431768211457", 1), -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.a.Compare(tc.b))
			assert.Equal(t, -tc.want, tc.b.Compare(tc.a))
		})
	}

	// The fixtures of one source order as their revisions and ordinals say.
	var envs []*tl.Envelope
	for _, f := range []string{"tensorlake.application.request.failed.json", "tensorlake.application.request.created.json", "tensorlake.application.request.completed.json"} {
		ev, err := tl.ParseEvent(fixtureBytes(t, f))
		require.NoError(t, err)
		envs = append(envs, &eventAs[*tl.RequestEvent](t, ev).Envelope)
	}
	assert.Negative(t, envs[0].Compare(envs[1]), "2^64+1 is before 2^128+1")
	assert.Negative(t, envs[1].Compare(envs[2]), "ordinal 0 is before ordinal 1 at the same revision")
	assert.Positive(t, envs[2].Compare(envs[0]))
}

// TestStaleUpdatesAreDropped documents how to use Envelope.Compare: Svix
// delivers sandbox events of one sandbox out of order and more than once; a
// consumer keeps the last envelope applied per source and ignores any event
// that does not compare greater, so the state it ends with is that of the
// newest event, whatever the arrival order.
func TestStaleUpdatesAreDropped(t *testing.T) {
	files := []string{
		"tensorlake.sandbox.created.json",    // 81240/0, pending
		"tensorlake.sandbox.running.json",    // 81241/0, running
		"tensorlake.sandbox.suspended.json",  // 81242/1, suspended
		"tensorlake.sandbox.resumed.json",    // 81243/0, pending
		"tensorlake.sandbox.terminated.json", // 81246/2, terminated
	}
	var events []*tl.SandboxEvent
	for _, f := range files {
		ev, err := tl.ParseEvent(fixtureBytes(t, f))
		require.NoError(t, err)
		events = append(events, eventAs[*tl.SandboxEvent](t, ev))
	}
	newest := events[len(events)-1]

	type consumer struct {
		last    map[string]tl.Envelope
		status  map[string]tl.SandboxStatus
		applied int
	}
	deliver := func(c *consumer, ev *tl.SandboxEvent) {
		if last, ok := c.last[ev.SourceID]; ok && ev.Compare(&last) <= 0 {
			return // stale or duplicate
		}
		c.last[ev.SourceID] = ev.Envelope
		c.status[ev.Data.Sandbox.ID] = ev.Data.Sandbox.Status
		c.applied++
	}

	// A worst case by hand: newest first, then everything older, twice.
	c := &consumer{last: map[string]tl.Envelope{}, status: map[string]tl.SandboxStatus{}}
	deliver(c, newest)
	for range 2 {
		for _, ev := range events {
			deliver(c, ev)
		}
	}
	assert.Equal(t, 1, c.applied, "only the newest event is applied")
	assert.Equal(t, tl.SandboxStatusTerminated, c.status[newest.Data.Sandbox.ID])

	// Random arrival orders with duplicates.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var arrivals []*tl.SandboxEvent
		for _, ev := range events {
			for range 1 + rng.IntN(3) {
				arrivals = append(arrivals, ev)
			}
		}
		rng.Shuffle(len(arrivals), func(i, j int) { arrivals[i], arrivals[j] = arrivals[j], arrivals[i] })
		c := &consumer{last: map[string]tl.Envelope{}, status: map[string]tl.SandboxStatus{}}
		for _, ev := range arrivals {
			deliver(c, ev)
		}
		require.Equal(t, tl.SandboxStatusTerminated, c.status[newest.Data.Sandbox.ID])
		last := c.last[newest.SourceID]
		require.Zero(t, newest.Compare(&last))
		require.LessOrEqual(t, c.applied, len(events), "a duplicate was applied twice")
	}
}
