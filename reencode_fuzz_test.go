package tlwebhook

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzReencode checks the diagnosis's re-encoder on any body: no panic,
// every form within its limit, and, for a JSON object that Go's
// encoding/json decodes into a map, the json.Marshal form exactly what
// encoding/json writes (the oracle for the fingerprint of issue 18).
func FuzzReencode(f *testing.F) {
	for _, seed := range []string{
		`{"b":1,"a":{"d":[1,2.50,{"z":null,"y":true}],"c":"<&>"}}`,
		`{"s":"caf\u00e9 \ud83d\ude00 \u2028","n":1e21,"m":-0.000001,"k":100000000000000000000}`,
		"{\n  \"a\": [\n    1\n  ]\n}\n",
		`[[[[]]]]`, `"x"`, `{"a":1,"a":2}`, `{"\u0000":"\u001f"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := newReencoder(body)
		r.find(func(b []byte) bool {
			if len(b) > r.limit+1 { // +1: a form may be tried with a newline
				t.Fatalf("a form of %d bytes exceeds the limit %d", len(b), r.limit)
			}
			return false
		})
		var m map[string]any
		if !utf8.Valid(body) || json.Unmarshal(body, &m) != nil || !r.isJSON() || r.depth > maxReencodedDepth {
			return
		}
		if !r.index() {
			return // more values than the index takes: not diagnosed
		}
		want, err := json.Marshal(m)
		if err != nil {
			return
		}
		got, ok := r.appendJSON(nil, goMarshalStyle)
		if ok && !bytes.Equal(got, want) {
			t.Fatalf("json.Marshal form differs:\ngot  %s\nwant %s", got, want)
		}
	})
}
