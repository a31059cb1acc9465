package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A bodyVariant is another encoding of a body that a sender or a receiver
// may have produced, for verify's diagnosis.
type bodyVariant struct {
	desc string // completes "the body ..."
	body []byte
}

// bodyVariants returns the encodings of body that commonly explain a
// signature mismatch, each different from body and from each other: line
// ending and whitespace changes, and, for JSON, the forms JSON libraries
// re-serialise to.
func bodyVariants(body []byte) []bodyVariant {
	var out []bodyVariant
	seen := map[string]bool{string(body): true}
	add := func(desc string, b []byte) {
		if !seen[string(b)] {
			seen[string(b)] = true
			out = append(out, bodyVariant{desc: desc, body: b})
		}
	}
	if bytes.HasSuffix(body, []byte("\r\n")) {
		add("without its trailing CRLF", body[:len(body)-2])
	}
	if bytes.HasSuffix(body, []byte("\n")) {
		add("without its trailing newline", body[:len(body)-1])
	}
	add("with a trailing newline added", append(bytes.Clone(body), '\n'))
	add("with surrounding whitespace removed", bytes.TrimSpace(body))
	if bytes.Contains(body, []byte("\r\n")) {
		add("with CRLF line endings changed to LF", bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")))
	} else if bytes.Contains(body, []byte("\n")) {
		add("with LF line endings changed to CRLF", bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n")))
	}

	trimmed := bytes.TrimSpace(body)
	if !json.Valid(trimmed) {
		return out
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, trimmed) // valid JSON
	js := []bodyVariant{{"re-serialised as compact JSON", compact.Bytes()}}
	for _, r := range []struct {
		desc           string
		comma, colon   string
		escapeNonASCII bool
	}{
		{desc: "re-serialised as compact JSON by JSON.stringify (escapes normalised)", comma: ",", colon: ":"},
		{desc: `re-serialised by Python's json.dumps (", " and ": " separators, non-ASCII as \uXXXX)`, comma: ", ", colon: ": ", escapeNonASCII: true},
		{desc: `re-serialised with ", " and ": " separators`, comma: ", ", colon: ": "},
	} {
		if b, err := reencode(trimmed, r.comma, r.colon, r.escapeNonASCII); err == nil {
			js = append(js, bodyVariant{r.desc, b})
		}
	}
	for _, in := range []struct{ desc, indent string }{
		{"pretty-printed as JSON with 2-space indent", "  "},
		{"pretty-printed as JSON with 4-space indent", "    "},
		{"pretty-printed as JSON with tab indent", "\t"},
	} {
		var b bytes.Buffer
		_ = json.Indent(&b, compact.Bytes(), "", in.indent)
		js = append(js, bodyVariant{in.desc, b.Bytes()})
	}
	for _, escapeHTML := range []bool{false, true} {
		desc := "re-serialised as compact JSON with keys sorted"
		if escapeHTML {
			desc = "re-serialised by Go's json.Marshal (keys sorted, <, > and & escaped)"
		}
		if b, err := sortedJSON(trimmed, escapeHTML); err == nil {
			js = append(js, bodyVariant{desc, b})
		}
	}
	for _, v := range js {
		add(v.desc, v.body)
		add(v.desc+", with a trailing newline", append(bytes.Clone(v.body), '\n'))
	}
	return out
}

// reencode re-serialises a JSON value keeping the order of object keys and
// the text of numbers, with the given separators and minimal string
// escapes, as JSON.stringify(JSON.parse(s)) or Python's
// json.dumps(json.loads(s)) do.
func reencode(data []byte, comma, colon string, escapeNonASCII bool) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var buf bytes.Buffer
	type frame struct {
		object bool
		n      int // tokens seen: for objects, keys and values
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			buf.WriteByte(byte(d))
			continue
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			switch {
			case top.object && top.n%2 == 1:
				buf.WriteString(colon)
			case top.n > 0:
				buf.WriteString(comma)
			}
			top.n++
		}
		switch v := tok.(type) {
		case json.Delim:
			buf.WriteByte(byte(v))
			stack = append(stack, frame{object: v == '{'})
		case string:
			writeJSONString(&buf, v, escapeNonASCII)
		case json.Number:
			buf.WriteString(string(v))
		case bool:
			buf.WriteString(strconv.FormatBool(v))
		case nil:
			buf.WriteString("null")
		default:
			return nil, fmt.Errorf("unexpected JSON token %T", tok)
		}
	}
}

// writeJSONString writes s as a JSON string with the minimal escapes, and
// non-ASCII characters as \uXXXX (surrogate pairs above U+FFFF) if asked.
func writeJSONString(buf *bytes.Buffer, s string, escapeNonASCII bool) {
	buf.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			buf.WriteString(`\"`)
		case r == '\\':
			buf.WriteString(`\\`)
		case r == '\n':
			buf.WriteString(`\n`)
		case r == '\r':
			buf.WriteString(`\r`)
		case r == '\t':
			buf.WriteString(`\t`)
		case r == '\b':
			buf.WriteString(`\b`)
		case r == '\f':
			buf.WriteString(`\f`)
		case r < 0x20:
			fmt.Fprintf(buf, `\u%04x`, r)
		case r < utf8.RuneSelf || !escapeNonASCII:
			buf.WriteRune(r)
		case r > 0xFFFF:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(buf, `\u%04x\u%04x`, hi, lo)
		default:
			fmt.Fprintf(buf, `\u%04x`, r)
		}
	}
	buf.WriteByte('"')
}

// sortedJSON re-serialises a JSON value through Go maps: compact, object
// keys sorted, numbers kept, HTML characters escaped if asked.
func sortedJSON(data []byte, escapeHTML bool) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
