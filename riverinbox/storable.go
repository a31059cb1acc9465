package riverinbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// escapedPrefix begins a string of a job's arguments that is stored
// percent-encoded (see [Args]).
const escapedPrefix = "%!"

// storable returns s as a job's arguments store it: unchanged, unless it
// holds U+0000 (PostgreSQL's jsonb refuses "\u0000"), bytes that are not
// UTF-8 (JSON would replace them), or begins with escapedPrefix; then
// escapedPrefix and s with "%", U+0000 and those bytes percent-encoded.
// It is injective, so that keys stay unique, and [original] reverses it.
func storable(s string) string {
	if !strings.HasPrefix(s, escapedPrefix) && strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(escapedPrefix) + len(s) + 8)
	b.WriteString(escapedPrefix)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == 0 || r == '%' || (r == utf8.RuneError && size == 1) {
			fmt.Fprintf(&b, "%%%02X", s[i])
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// original reverses [storable]. A string that begins with escapedPrefix but
// does not decode (written by other code) is returned as it is.
func original(s string) string {
	rest, ok := strings.CutPrefix(s, escapedPrefix)
	if !ok {
		return s
	}
	o, err := url.PathUnescape(rest)
	if err != nil {
		return s
	}
	return o
}

// maxReadableNumber is the longest number kept as a number in the readable
// copy of a payload; longer ones, and exponents beyond maxReadableExponent,
// become strings. PostgreSQL's numeric, behind jsonb, refuses numbers far
// beyond these.
const (
	maxReadableNumber   = 64
	maxReadableExponent = 1000
)

// readable returns the copy of payload shown in River UI (see
// [Args.PayloadJSON]), or nil when payload is not JSON.
func readable(payload []byte) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(clean(v)); err != nil {
		return nil
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// clean makes a decoded JSON value storable by every database's JSON type.
func clean(v any) any {
	switch v := v.(type) {
	case string:
		return cleanString(v)
	case json.Number:
		if !readableNumber(string(v)) {
			return string(v)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = clean(e)
		}
		return v
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[cleanString(k)] = clean(e)
		}
		return out
	}
	return v // bool, nil
}

func cleanString(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

func readableNumber(n string) bool {
	if len(n) > maxReadableNumber {
		return false
	}
	i := strings.IndexAny(n, "eE")
	if i < 0 {
		return true
	}
	exp, err := strconv.Atoi(strings.TrimPrefix(n[i+1:], "+"))
	return err == nil && exp >= -maxReadableExponent && exp <= maxReadableExponent
}
