package tlwebhook

import (
	"bytes"
	jsonv1 "encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Re-serialising a JSON body in a given style (separators, indentation,
// string escapes, sorted keys, Go's float format), for the 401 diagnosis:
// linear passes whose output is abandoned past a limit.

// jsonStyle describes the output of one JSON re-serialisation.
type jsonStyle struct {
	comma, colon string // separators, when not indenting
	indent       string // per level; non-empty means pretty-printed
	escape       escapeMode
	sortKeys     bool // object members sorted by name (Go maps)
	goNumbers    bool // numbers as Go's encoding/json writes a float64
}

type escapeMode int

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
			if r.keyArena, err = appendUnquoteLenient(r.keyArena, raw); err != nil {
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
		w.r.str, err = appendUnquoteLenient(w.r.str[:0], raw)
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

// appendUnquoteLenient appends the string raw (a JSON string literal)
// unquoted, replacing invalid UTF-8 and lone surrogates with U+FFFD, as Go's
// encoding/json and JSON.parse-based re-encoders do.
func appendUnquoteLenient(dst, raw []byte) ([]byte, error) {
	if out, err := jsontext.AppendUnquote(dst, raw); err == nil {
		return out, nil
	}
	var s string
	if err := jsonv1.Unmarshal(raw, &s); err != nil {
		return dst, err
	}
	return append(dst, s...), nil
}
