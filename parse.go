package tlwebhook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// ParseEvent decodes a payload that has already been verified, for example
// one taken from a queue after [Verifier.Verify]. It does not check
// signatures.
//
// A payload with a string event_type is a lifecycle envelope, decoded by its
// type or family ([*SandboxEvent], [*ApplicationEvent], [*RequestEvent]);
// one with workflow fields is a [*WorkflowCompleted]; one with a final job
// status is a job event. Anything else that is a JSON object is an
// [*UnknownEvent].
//
// Decoding is strict, with the semantics of encoding/json/v2: member names
// match case-sensitively, and a duplicated member name or invalid UTF-8
// anywhere in the payload is an error, so that no other reader of the same
// bytes can see a different event. ParseEvent returns an error wrapping
// [ErrInvalidPayload] when the payload is not a single valid JSON object, or
// is a known event whose fields have the wrong JSON type (or a time that is
// not RFC 3339). Error messages name fields, never their values.
func ParseEvent(payload []byte) (Event, error) {
	ev, _, err := parse(payload)
	return ev, err
}

// parse decodes payload and returns the event with its row in the event
// table.
func parse(payload []byte) (Event, int, error) {
	p, err := scan(payload)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s", ErrInvalidPayload, describeJSONError(err, nil))
	}
	var k int
	switch {
	case p.hasEventType:
		k = lifecycleKind(p.eventType)
	case p.workflow:
		k = workflowIndex
	case p.hasStatus:
		if k = jobKindFor(p.status); k < 0 {
			k = unknownIndex
		}
	default:
		k = unknownIndex
	}
	if k == unknownIndex {
		u, _ := newUnknown(payload)
		return u, k, nil
	}
	ev := kinds[k].newEvent()
	if err := json.Unmarshal(payload, ev); err != nil {
		if !p.hasEventType {
			return nil, 0, fmt.Errorf("%w: %s: %s", ErrInvalidPayload, kinds[k].Types[0], describeJSONError(err, kinds[k].rtype))
		}
		// A lifecycle type or schema version this library does not know,
		// whose data does not fit its family's struct, is new, not
		// invalid: it reaches OnUnknown.
		u, versionOK := newUnknown(payload)
		if _, known := byType[EventType(p.eventType)]; known && versionOK && u.EventVersion == 1 {
			return nil, 0, fmt.Errorf("%w: %s: %s", ErrInvalidPayload, p.eventType, describeJSONError(err, kinds[k].rtype))
		}
		return u, unknownIndex, nil
	}
	return ev, k, nil
}

// probe holds the members that decide what a payload is.
type probe struct {
	eventType    string
	status       string
	hasEventType bool
	hasStatus    bool
	workflow     bool
}

// scanner is a reusable reader and decoder for scan.
type scanner struct {
	buf bytes.Buffer // jsontext reads a bytes.Buffer in place, without copying
	dec jsontext.Decoder
}

var scanners = sync.Pool{New: func() any { return new(scanner) }}

// scan reads the payload's top-level members with jsontext, decoding only
// the discriminators and skipping every other value. It validates the whole
// payload as one JSON object (duplicate names and invalid UTF-8 included),
// so that the struct decoding that follows only has types to check.
func scan(payload []byte) (probe, error) {
	var p probe
	s := scanners.Get().(*scanner)
	defer func() {
		// Keep no reference to the payload in the pool.
		s.buf = bytes.Buffer{}
		s.dec.Reset(&s.buf)
		scanners.Put(s)
	}()
	s.buf = *bytes.NewBuffer(payload)
	s.dec.Reset(&s.buf)
	dec := &s.dec
	if dec.PeekKind() != '{' {
		if _, err := dec.ReadToken(); err != nil {
			return p, err
		}
		return p, errNotObject
	}
	if _, err := dec.ReadToken(); err != nil {
		return p, err
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadValue()
		if err != nil {
			return p, err
		}
		switch string(memberName(name)) {
		case "event_type":
			p.eventType, p.hasEventType, err = stringValue(dec)
		case "status":
			p.status, p.hasStatus, err = stringValue(dec)
		case "workflow_name", "invocation_id", "fn_status":
			var v jsontext.Value
			if v, err = dec.ReadValue(); err == nil && v.Kind() != 'n' {
				p.workflow = true
			}
		default:
			err = dec.SkipValue()
		}
		if err != nil {
			return p, err
		}
	}
	if _, err := dec.ReadToken(); err != nil { // the closing brace
		return p, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		if err == nil {
			err = errTrailing
		}
		return p, err
	}
	return p, nil
}

var (
	errNotObject = errors.New("not a JSON object")
	errTrailing  = errors.New("data after the JSON object")
)

// memberName returns a member name's unquoted text, without allocating when
// it has no escapes.
func memberName(raw jsontext.Value) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1]
	}
	b, _ := jsontext.AppendUnquote(nil, raw) // valid: the decoder checked it
	return b
}

// stringValue reads the next value and returns it when it is a string.
func stringValue(dec *jsontext.Decoder) (string, bool, error) {
	v, err := dec.ReadValue()
	if err != nil || v.Kind() != '"' {
		return "", false, err
	}
	b, err := jsontext.AppendUnquote(nil, v)
	return string(b), err == nil, err
}

// lenientEnvelope holds envelope members undecoded, so that each can be
// decoded on its own and a bad one does not lose the others.
type lenientEnvelope struct {
	EventID        jsontext.Value `json:"event_id"`
	EventType      jsontext.Value `json:"event_type"`
	EventVersion   jsontext.Value `json:"event_version"`
	OccurredAt     jsontext.Value `json:"occurred_at"`
	ProjectID      jsontext.Value `json:"project_id"`
	SourceID       jsontext.Value `json:"source_id"`
	SourceRevision jsontext.Value `json:"source_revision"`
	SourceOrdinal  jsontext.Value `json:"source_ordinal"`
	Data           jsontext.Value `json:"data"`
}

// newUnknown builds an UnknownEvent from a payload that is known to be a
// valid JSON object, decoding what it can of an envelope. It also reports
// whether event_version was present and decoded.
func newUnknown(payload []byte) (*UnknownEvent, bool) {
	u := &UnknownEvent{Raw: bytes.Clone(payload)}
	var le lenientEnvelope
	_ = json.Unmarshal(u.Raw, &le) // valid JSON; members are raw
	decodeField(le.EventID, &u.EventID)
	decodeField(le.EventType, &u.Envelope.EventType)
	ok := decodeField(le.EventVersion, &u.EventVersion)
	decodeField(le.OccurredAt, &u.OccurredAt)
	decodeField(le.ProjectID, &u.ProjectID)
	decodeField(le.SourceID, &u.SourceID)
	decodeField(le.SourceRevision, &u.SourceRevision)
	decodeField(le.SourceOrdinal, &u.SourceOrdinal)
	if len(le.Data) > 0 && le.Data.Kind() != 'n' {
		u.Data = []byte(le.Data)
	}
	return u, ok
}

func decodeField[T any](raw jsontext.Value, dst *T) bool {
	if len(raw) == 0 || raw.Kind() == 'n' {
		return false
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return false
	}
	*dst = v
	return true
}

// describeJSONError describes a decoding error without quoting payload
// content: a JSON pointer to the member (map keys redacted, see
// redactMapKeys; root is the decoded struct's pointer type), kinds and types
// only.
func describeJSONError(err error, root reflect.Type) string {
	var se *json.SemanticError
	if errors.As(err, &se) {
		field := redactMapKeys(string(se.JSONPointer), root)
		if field == "" {
			field = "(top level)"
		}
		want := "the expected type"
		if se.GoType != nil {
			want = se.GoType.String()
		}
		if se.JSONKind != 0 {
			return fmt.Sprintf("field %s: got JSON %s, want %s", truncate(field, 128), kindName(se.JSONKind), want)
		}
		return fmt.Sprintf("field %s: does not decode as %s", truncate(field, 128), want)
	}
	var xe *jsontext.SyntacticError
	if errors.As(err, &xe) {
		switch {
		case errors.Is(err, jsontext.ErrDuplicateName):
			return fmt.Sprintf("duplicate member name at offset %d", xe.ByteOffset)
		case strings.Contains(xe.Error(), "invalid UTF-8"):
			return fmt.Sprintf("invalid UTF-8 at offset %d", xe.ByteOffset)
		}
		return fmt.Sprintf("malformed JSON at offset %d", xe.ByteOffset)
	}
	if errors.Is(err, errNotObject) || errors.Is(err, errTrailing) {
		return err.Error()
	}
	return "does not decode"
}

func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "boolean"
	case '"':
		return "string"
	case '0':
		return "number"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "value"
}

// redactMapKeys replaces the segments of a JSON pointer that lie inside a
// map of the decoded struct t (map keys are payload content, such as the
// function names of fn_status) with a single "*".
func redactMapKeys(pointer string, t reflect.Type) string {
	if pointer == "" || t == nil {
		return pointer
	}
	var out strings.Builder
	for _, seg := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t != nil && t.Kind() == reflect.Map {
			out.WriteString("/*")
			return out.String()
		}
		switch {
		case t == nil:
		case t.Kind() == reflect.Struct:
			t = jsonFieldType(t, seg)
		case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
			t = t.Elem()
		default:
			t = nil
		}
		out.WriteString("/" + seg)
	}
	return out.String()
}

// jsonFieldType returns the type of the field of struct t whose JSON name is
// name, looking into embedded structs, or nil.
func jsonFieldType(t reflect.Type, name string) reflect.Type {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			if ft := jsonFieldType(f.Type, name); ft != nil {
				return ft
			}
			continue
		}
		if tag == name || tag == "" && f.Name == name {
			return f.Type
		}
	}
	return nil
}
