package tlwebhook

import (
	"bytes"
	"math"

	"github.com/go-json-experiment/json/jsontext"
)

// Re-encodings of a body that fails verification, for the diagnosis of a
// 401: the forms that middlewares, proxies and JSON libraries commonly turn
// a signed body into. The body has not verified, so everything here is
// bounded by its size: each pass is linear in the body, each output is
// capped at [reencodeLimit] and abandoned beyond it (deeply nested bodies
// cannot blow up when indented), and the memory used is a small multiple of
// the body.

// A reencoding is one way a body may have been transformed.
type reencoding struct {
	// how completes "the body verifies once ...".
	how string
	// apply appends the transformed body to dst; ok is false when the
	// transformation does not apply or its output would exceed limit bytes.
	apply func(r *reencoder, dst []byte) ([]byte, bool)
	// json marks the JSON forms, which are also tried with a trailing
	// newline.
	json bool
}

const (
	escapeKeep    escapeMode = iota // strings copied as received
	escapeMinimal                   // only what JSON requires (JSON.stringify)
	escapeASCII                     // and non-ASCII as \uXXXX (Python's json.dumps)
	escapeGo                        // and <, >, &, U+2028, U+2029 (Go's json.Marshal)
)

// reencodings lists the transformations tried, cheapest first. Each JSON
// form is also tried with a trailing newline, which formatters often add.
var reencodings = []reencoding{
	{how: "without its trailing CRLF", apply: func(r *reencoder, dst []byte) ([]byte, bool) {
		b, ok := bytes.CutSuffix(r.body, []byte("\r\n"))
		return append(dst, b...), ok
	}},
	{how: "without its trailing newline", apply: func(r *reencoder, dst []byte) ([]byte, bool) {
		b, ok := bytes.CutSuffix(r.body, []byte("\n"))
		return append(dst, b...), ok
	}},
	{how: "with a trailing newline added", apply: func(r *reencoder, dst []byte) ([]byte, bool) {
		return append(append(dst, r.body...), '\n'), true
	}},
	{how: "with surrounding whitespace removed", apply: func(r *reencoder, dst []byte) ([]byte, bool) {
		return append(dst, bytes.TrimSpace(r.body)...), true
	}},
	{how: "with CRLF line endings changed to LF", apply: func(r *reencoder, dst []byte) ([]byte, bool) {
		return replaceBounded(dst, r.body, "\r\n", "\n", r.limit)
	}},
	{how: "with LF line endings changed to CRLF", apply: func(r *reencoder, dst []byte) ([]byte, bool) {
		if bytes.Contains(r.body, []byte("\r\n")) {
			return dst, false
		}
		return replaceBounded(dst, r.body, "\n", "\r\n", r.limit)
	}},
	jsonForm("compacted", jsonStyle{comma: ",", colon: ":"}),
	jsonForm("compacted with string escapes normalised (JSON.stringify)", jsonStyle{comma: ",", colon: ":", escape: escapeMinimal}),
	jsonForm(`re-serialised with ", " and ": " separators`, jsonStyle{comma: ", ", colon: ": ", escape: escapeMinimal}),
	jsonForm(`re-serialised by Python's json.dumps (", " and ": " separators, non-ASCII as \uXXXX)`, jsonStyle{comma: ", ", colon: ": ", escape: escapeASCII}),
	jsonForm("indented with two spaces", jsonStyle{indent: "  "}),
	jsonForm("indented with four spaces", jsonStyle{indent: "    "}),
	jsonForm("indented with tabs", jsonStyle{indent: "\t"}),
	jsonForm("compacted with object keys sorted", jsonStyle{comma: ",", colon: ":", escape: escapeMinimal, sortKeys: true}),
	jsonForm("re-serialised by Go's json.Marshal of a map[string]any (keys sorted, <, > and & escaped, numbers as float64)",
		goMarshalStyle),
}

func jsonForm(how string, s jsonStyle) reencoding {
	return reencoding{how: how, json: true, apply: func(r *reencoder, dst []byte) ([]byte, bool) {
		if !r.isJSON() || r.depth > maxReencodedDepth {
			return dst, false
		}
		return r.appendJSON(dst, s)
	}}
}

// replaceBounded appends body with every old replaced by new, unless there
// is none or the result would exceed limit.
func replaceBounded(dst, body []byte, old, new string, limit int) ([]byte, bool) {
	n := bytes.Count(body, []byte(old))
	if n == 0 || len(body)+n*(len(new)-len(old)) > limit {
		return dst, false
	}
	for {
		i := bytes.Index(body, []byte(old))
		if i < 0 {
			return append(dst, body...), true
		}
		dst = append(append(dst, body[:i]...), new...)
		body = body[i+len(old):]
	}
}

// reencodeLimit bounds each re-encoded output: twice the body, plus room
// for the indentation of a small one.
func reencodeLimit(n int) int { return 2*n + 8<<10 }

// A reencoder re-encodes one body; its scratch buffers are reused across
// the forms tried.
type reencoder struct {
	body  []byte
	limit int
	valid int8 // 0 unknown, 1 valid JSON, -1 not
	depth int  // the deepest nesting, for valid JSON
	// the object index for sorted forms, built once per body
	items    []jsonItem
	nodes    []jsonNode
	keyArena []byte
	indexed  int8 // 0 not built, 1 built, -1 failed
	str      []byte
}

func newReencoder(body []byte) *reencoder {
	return &reencoder{body: body, limit: reencodeLimit(len(body))}
}

// maxReencodedDepth is the deepest nesting re-encoded: Tensorlake's
// payloads nest a few levels, and a JSON decoder's memory grows with the
// depth, so deeper bodies are only checked for validity.
const maxReencodedDepth = 64

func (r *reencoder) isJSON() bool {
	if r.valid == 0 {
		r.valid = -1
		if len(r.body) < math.MaxInt32 && jsontext.Value(r.body).IsValid(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)) {
			r.valid = 1
			r.depth = maxDepth(r.body)
		}
	}
	return r.valid == 1
}

// decoder returns a decoder over the body that reads it in place and
// tolerates what a lenient JSON library would.
func (r *reencoder) decoder() *jsontext.Decoder {
	return jsontext.NewDecoder(bytes.NewBuffer(r.body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
}

// find returns how the body must have been transformed for match to
// accept it, or "" when no form tried matches. The work is linear in the
// body and the memory a small multiple of it.
func (r *reencoder) find(match func([]byte) bool) string {
	body := r.body
	buf := make([]byte, 0, min(r.limit+1, 64<<10))
	for _, re := range reencodings {
		out, ok := re.apply(r, buf[:0])
		if cap(out) > cap(buf) {
			buf = out[:0]
		}
		if !ok || len(out) > r.limit {
			continue
		}
		if !bytes.Equal(out, body) && match(out) {
			return re.how
		}
		if re.json {
			nl := append(out, '\n')
			if cap(nl) > cap(buf) {
				buf = nl[:0]
			}
			if !bytes.Equal(nl, body) && match(nl) {
				return re.how + ", with a trailing newline"
			}
		}
	}
	return ""
}

// goMarshalStyle is how Go's json.Marshal writes a map[string]any.
var goMarshalStyle = jsonStyle{comma: ",", colon: ":", escape: escapeGo, sortKeys: true, goNumbers: true}

// goMarshalled reports whether the body has exactly the form that Go's
// json.Marshal gives a decoded map[string]any (compact, object keys sorted
// at every level, <, > and & escaped, numbers as float64), with at least
// one object of two members or more so that the order says something. The
// original order of the keys cannot be recovered from such a body, so this
// fingerprint is the diagnosis of the most common Go re-encoding: a
// middleware that decodes the body into a map and encodes it again.
func (r *reencoder) goMarshalled() bool {
	if !r.index() || !r.nodes[0].object {
		return false
	}
	wide := false
	for _, nd := range r.nodes {
		wide = wide || nd.object && nd.to-nd.from >= 2
	}
	if !wide {
		return false
	}
	out, ok := r.appendJSON(make([]byte, 0, len(r.body)+1), goMarshalStyle)
	return ok && bytes.Equal(out, r.body)
}
