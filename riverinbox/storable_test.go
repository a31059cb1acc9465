package riverinbox

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

func TestStorable(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"},
		{"evt_50%_off", "evt_50%_off"},
		{"", ""},
		{"evt\x00x", "%!evt%00x"},
		{"%!evt", "%!%25!evt"},
		{"a%b\x00", "%!a%25b%00"},
		{"bad\xffutf8", "%!bad%FFutf8"},
		{"caf\u00e9\x00", "%!caf\u00e9%00"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got := storable(c.in)
			if got != c.want {
				t.Fatalf("storable(%q) = %q, want %q", c.in, got, c.want)
			}
			if strings.IndexByte(got, 0) >= 0 {
				t.Fatalf("storable(%q) = %q holds U+0000", c.in, got)
			}
			if back := original(got); back != c.in {
				t.Fatalf("original(%q) = %q, want %q", got, back, c.in)
			}
		})
	}
	// Injective: distinct inputs never share a stored form.
	seen := map[string]string{}
	for _, c := range cases {
		for _, s := range []string{c.in, c.want, "%!" + c.in, c.in + "%00"} {
			st := storable(s)
			if prev, ok := seen[st]; ok && prev != s {
				t.Fatalf("%q and %q are both stored as %q", prev, s, st)
			}
			seen[st] = s
		}
	}
}

func TestReadable(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"object", `{ "type" : "a.b", "n": 1.50, "s": "x<y" }`, `{"n":1.50,"s":"x<y","type":"a.b"}`},
		{"U+0000 in a value and a name", `{"event_id":"evt\u0000x","k\u0000":[true,null]}`, `{"event_id":"evt` + "\uFFFD" + `x","k` + "\uFFFD" + `":[true,null]}`},
		{"huge numbers become strings", `{"a":1e999999,"b":` + strings.Repeat("9", 100) + `,"c":-2.5E-7}`, `{"a":"1e999999","b":"` + strings.Repeat("9", 100) + `","c":-2.5E-7}`},
		{"not JSON", `{"a":`, ``},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := string(readable([]byte(c.in))); got != c.want {
				t.Fatalf("readable(%s) = %s, want %s", c.in, got, c.want)
			}
		})
	}
}

// TestVerifiedPayloadOfEarlierJobs: a job recorded before the readable copy
// existed kept the exact bytes, base64, under "payload"; the worker still
// gets them.
func TestVerifiedPayloadOfEarlierJobs(t *testing.T) {
	body := []byte(`{"type":"tensorlake.sandbox.running", "event_id":"evt_1"}`)
	old := `{"id":"msg_1","key":"evt_1","timestamp":"2026-01-02T03:04:05Z","event_id":"evt_1","payload":"` + base64.StdEncoding.EncodeToString(body) + `"}`
	var a Args
	if err := json.Unmarshal([]byte(old), &a); err != nil {
		t.Fatal(err)
	}
	if got := a.verifiedPayload(); string(got) != string(body) {
		t.Fatalf("verifiedPayload = %q, want %q", got, body)
	}
	now := argsOf(a.Delivery(), body)
	if got := now.verifiedPayload(); string(got) != string(body) {
		t.Fatalf("verifiedPayload of new args = %q, want %q", got, body)
	}
}

// BenchmarkArgsOf: the cost, per delivery, of the readable copies an Inbox
// makes before inserting (the event type decoded, the payload re-encoded),
// on Tensorlake's job.completed sample.
func BenchmarkArgsOf(b *testing.B) {
	payload := tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)
	d := tlwebhook.Delivery{ID: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		_ = argsOf(d, payload)
	}
}
