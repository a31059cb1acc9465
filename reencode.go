package tlwebhook

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

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

// jsonStyle describes the output of one JSON re-serialisation.
type jsonStyle struct {
	comma, colon string // separators, when not indenting
	indent       string // per level; non-empty means pretty-printed
	escape       escapeMode
	sortKeys     bool // object members sorted by name (Go maps)
	goNumbers    bool // numbers as Go's encoding/json writes a float64
}

type escapeMode int

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

// maxDepth returns how deeply the arrays and objects of valid JSON nest.
func maxDepth(b []byte) int {
	depth, deepest := 0, 0
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// decoder returns a decoder over the body that reads it in place and
// tolerates what a lenient JSON library would.
func (r *reencoder) decoder() *jsontext.Decoder {
	return jsontext.NewDecoder(bytes.NewBuffer(r.body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
}

// appendJSON appends the body re-serialised in style s.
func (r *reencoder) appendJSON(dst []byte, s jsonStyle) ([]byte, bool) {
	if s.sortKeys {
		if !r.index() {
			return dst, false
		}
		w := jsonWriter{r: r, s: s, out: dst, limit: len(dst) + r.limit}
		w.node(0, 0)
		return w.out, w.ok()
	}
	dec := r.decoder()
	w := jsonWriter{r: r, s: s, out: dst, limit: len(dst) + r.limit}
	type frame struct {
		object bool
		n      int
	}
	var stack []frame
	for w.ok() {
		kind := dec.PeekKind()
		if kind == 0 {
			break // end of input
		}
		if kind == '}' || kind == ']' {
			if _, err := dec.ReadToken(); err != nil {
				return dst, false
			}
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if top.n > 0 {
				w.newline(len(stack))
			}
			w.byte(byte(kind))
			continue
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			switch {
			case top.object && top.n%2 == 1:
				w.colon()
			case top.n > 0:
				w.comma(len(stack))
			default:
				w.newline(len(stack))
			}
			top.n++
		}
		if kind == '{' || kind == '[' {
			if _, err := dec.ReadToken(); err != nil {
				return dst, false
			}
			w.byte(byte(kind))
			stack = append(stack, frame{object: kind == '{'})
			continue
		}
		raw, err := dec.ReadValue()
		if err != nil {
			return dst, false
		}
		w.scalar(raw)
	}
	return w.out, w.ok()
}

// The object index for sorted forms: every container of the body as a
// node whose items are contiguous in r.items, children before parents.

type jsonItem struct {
	keyStart, keyEnd int32 // the member's name in keyArena (objects only)
	start, end       int32 // a scalar value's text in the body
	child            int32 // a container value's node, or -1
}

type jsonNode struct {
	object   bool
	from, to int32 // its items in r.items
}

// index builds the object index in one pass: memory proportional to the
// number of values, time linear in the body.
func (r *reencoder) index() bool {
	if r.indexed != 0 {
		return r.indexed == 1
	}
	r.indexed = -1
	if !r.isJSON() || r.depth > maxReencodedDepth {
		return false
	}
	dec := r.decoder()
	type open struct {
		node       int32
		pending    int  // where its items start in pending
		expectName bool // an object waiting for a member name
	}
	var (
		stack   []open
		pending []jsonItem
		key     jsonItem // the name read for the next member
	)
	r.nodes, r.items, r.keyArena = r.nodes[:0], r.items[:0], r.keyArena[:0]
	// Sorting is for payloads, whose values take a dozen bytes or more
	// each: a body packed with more values than maxValues (one per 16
	// bytes) is not indexed, which bounds the index at a few times the body.
	maxValues := len(r.body)/16 + 1024
	values := 0
	add := func(it jsonItem) {
		values++
		pending = append(pending, it)
		key = jsonItem{}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			top.expectName = r.nodes[top.node].object
		}
	}
	for {
		kind := dec.PeekKind()
		if kind == 0 {
			break
		}
		if values > maxValues {
			return false
		}
		switch kind {
		case '{', '[':
			if _, err := dec.ReadToken(); err != nil {
				return false
			}
			n := int32(len(r.nodes))
			r.nodes = append(r.nodes, jsonNode{object: kind == '{'})
			it := key
			it.child = n
			add(it)
			stack = append(stack, open{node: n, pending: len(pending), expectName: kind == '{'})
			continue
		case '}', ']':
			if _, err := dec.ReadToken(); err != nil {
				return false
			}
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			nd := &r.nodes[top.node]
			nd.from = int32(len(r.items))
			r.items = append(r.items, pending[top.pending:]...)
			nd.to = int32(len(r.items))
			pending = pending[:top.pending]
			continue
		}
		if len(stack) == 0 {
			return false // a scalar at the top: nothing to sort
		}
		raw, err := dec.ReadValue()
		if err != nil {
			return false
		}
		end := dec.InputOffset() // the value's text ends here
		if top := &stack[len(stack)-1]; top.expectName {
			s := int32(len(r.keyArena))
			if r.keyArena, err = jsontext.AppendUnquote(r.keyArena, raw); err != nil {
				return false
			}
			key = jsonItem{keyStart: s, keyEnd: int32(len(r.keyArena))}
			top.expectName = false
			continue
		}
		it := key
		it.start, it.end, it.child = int32(end)-int32(len(raw)), int32(end), -1
		add(it)
	}
	if len(r.nodes) == 0 || len(pending) != 1 {
		return false
	}
	r.indexed = 1
	return true
}

func (r *reencoder) keyOf(it jsonItem) []byte {
	return r.keyArena[it.keyStart:it.keyEnd]
}

// A jsonWriter appends one re-encoded form, giving up once it passes limit.
type jsonWriter struct {
	r     *reencoder
	s     jsonStyle
	out   []byte
	limit int
}

func (w *jsonWriter) ok() bool { return len(w.out) <= w.limit }

func (w *jsonWriter) byte(c byte) { w.out = append(w.out, c) }

func (w *jsonWriter) newline(depth int) {
	if w.s.indent == "" || !w.ok() {
		return
	}
	w.out = append(w.out, '\n')
	for i := 0; i < depth && w.ok(); i++ {
		w.out = append(w.out, w.s.indent...)
	}
}

func (w *jsonWriter) comma(depth int) {
	if w.s.indent != "" {
		w.out = append(w.out, ',')
		w.newline(depth)
		return
	}
	w.out = append(w.out, w.s.comma...)
}

func (w *jsonWriter) colon() {
	if w.s.indent != "" {
		w.out = append(w.out, ": "...)
		return
	}
	w.out = append(w.out, w.s.colon...)
}

// scalar appends a string, number or literal in the writer's style.
func (w *jsonWriter) scalar(raw []byte) {
	switch {
	case raw[0] == '"' && w.s.escape != escapeKeep:
		var err error
		w.r.str, err = jsontext.AppendUnquote(w.r.str[:0], raw)
		if err != nil {
			w.out = append(w.out, raw...)
			return
		}
		w.out = appendQuoted(w.out, w.r.str, w.s.escape)
	case w.s.goNumbers && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'):
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			w.limit = -1 // out of range: json.Unmarshal would have failed
			return
		}
		w.out = appendGoFloat(w.out, f)
	default:
		w.out = append(w.out, raw...)
	}
}

// node appends container n with its members sorted by name (the last of
// duplicated names wins, as in a Go map).
func (w *jsonWriter) node(n int32, depth int) {
	nd := w.r.nodes[n]
	items := w.r.items[nd.from:nd.to]
	open, closing := byte('['), byte(']')
	if nd.object {
		open, closing = '{', '}'
		slices.SortStableFunc(items, func(a, b jsonItem) int { return bytes.Compare(w.r.keyOf(a), w.r.keyOf(b)) })
	}
	w.byte(open)
	first := true
	for i, it := range items {
		if !w.ok() {
			return
		}
		if nd.object && i+1 < len(items) && bytes.Equal(w.r.keyOf(it), w.r.keyOf(items[i+1])) {
			continue
		}
		if first {
			w.newline(depth + 1)
		} else {
			w.comma(depth + 1)
		}
		first = false
		if nd.object {
			w.out = appendQuoted(w.out, w.r.keyOf(it), w.s.escape)
			w.colon()
		}
		if it.child >= 0 {
			w.node(it.child, depth+1)
		} else {
			w.scalar(w.r.body[it.start:it.end])
		}
	}
	if !first {
		w.newline(depth)
	}
	w.byte(closing)
}

// appendQuoted appends s as a JSON string with the escapes of mode.
func appendQuoted(dst, s []byte, mode escapeMode) []byte {
	const hex = "0123456789abcdef"
	u := func(dst []byte, r rune) []byte {
		return append(dst, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
	}
	dst = append(dst, '"')
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		s = s[size:]
		switch {
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r == '\n':
			dst = append(dst, '\\', 'n')
		case r == '\r':
			dst = append(dst, '\\', 'r')
		case r == '\t':
			dst = append(dst, '\\', 't')
		case r == '\b':
			dst = append(dst, '\\', 'b')
		case r == '\f':
			dst = append(dst, '\\', 'f')
		case r < 0x20:
			dst = u(dst, r)
		case mode == escapeGo && (r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029'):
			dst = u(dst, r)
		case r < utf8.RuneSelf:
			dst = append(dst, byte(r))
		case mode == escapeASCII && r > 0xffff:
			hi, lo := utf16.EncodeRune(r)
			dst = u(u(dst, hi), lo)
		case mode == escapeASCII:
			dst = u(dst, r)
		default:
			dst = utf8.AppendRune(dst, r) // invalid UTF-8 becomes U+FFFD, as in Go
		}
	}
	return append(dst, '"')
}

// appendGoFloat appends f as Go's encoding/json writes a float64.
func appendGoFloat(dst []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9, as encoding/json does.
		if n := len(dst) - start; n >= 4 && dst[len(dst)-4] == 'e' && dst[len(dst)-3] == '-' && dst[len(dst)-2] == '0' {
			dst[len(dst)-2] = dst[len(dst)-1]
			dst = dst[:len(dst)-1]
		}
	}
	return dst
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
