package tlwebhook

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
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
// [ErrInvalidPayload] when the payload is not a single valid JSON object.
//
// Tensorlake changes its payloads over time ([Drift]). Additive drift (a
// member or enumeration value the library does not model, a new type of a
// known family) is no error: the event decodes. Breaking drift (a modelled
// member of another JSON kind, a number that does not fit, a time that
// does not parse, an event_version above [MaxEventVersion]) returns an
// [*UnknownEvent] that keeps the payload and lists the drift
// ([UnknownEvent.Drift]) together with an error wrapping [ErrSchemaDrift]:
// the event is intact, but this version of the library cannot type it.
// [CheckDrift] returns the whole report. Error messages name fields, never
// their values.
func ParseEvent(payload []byte) (Event, error) {
	ev, _, _, err := parse(payload, false, nil)
	if err != nil && !errors.Is(err, ErrSchemaDrift) {
		return nil, err
	}
	return ev, err
}

// strict decodes with unknown members refused: a payload that decodes so
// fits its struct exactly, but for enumeration values, new types of a
// family and the event version, which are checked on the decoded event.
var strict = json.RejectUnknownMembers(true)

// validated decodes a payload that the walk has validated, without
// tracking member names for duplicates again.
var validated = jsontext.AllowDuplicateNames(true)

// parse decodes payload and returns the event with its row in the event
// table and the payload's drift. Breaking drift returns an UnknownEvent
// (row unknownIndex) and an error wrapping ErrSchemaDrift; a malformed
// payload returns an error wrapping ErrInvalidPayload. Without report, the
// additive drift of a payload that decodes is left out (ParseEvent needs
// none). memo, if not nil, interns the pointers of drift already reported.
//
// A payload that fits its struct costs one pass: the row is guessed from the
// bytes (a guess, checked on the decoded event), and the payload decoded
// strictly into it. Anything else takes the slow path: a scan that validates
// the payload and finds its row, a walk that lists its drift, then a
// lenient decode when the drift is additive.
func parse(payload []byte, report bool, memo *driftLog) (Event, int, []Drift, error) {
	p := parsers.Get().(*parseState)
	p.memo = memo
	defer p.release()

	guess, guessType := guessKind(payload)
	var tried Event // the event of the guessed row, reused when the guess was right
	if guess >= 0 && guess != unknownIndex {
		ev := kinds[guess].newEvent()
		k := guess
		if json.Unmarshal(payload, ev, strict) == nil && confirmKind(k, ev) {
			p.typ = ev.Type()
			p.checkEvent(k, ev)
			if p.breaking {
				return p.unknown(payload)
			}
			return ev, k, p.report(), nil
		}
		tried = ev
	}

	// The slow path. With a report to make and a guess, the walk that
	// validates the payload and finds its row also lists its drift against
	// the guessed row (right but in odd payloads); else it only validates.
	var shape *shape
	if report && tried != nil {
		shape = schemas[guess].shape
		p.typ = kinds[guess].Types[0]
		if guessType != nil {
			p.typ = EventType(guessType)
		}
	}
	pr, err := p.walk(payload, shape)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("%w: %s", ErrInvalidPayload, describeJSONError(err))
	}
	var k int
	switch {
	case pr.hasEventType:
		k = lifecycleKind(pr.eventType)
	case pr.workflow:
		k = workflowIndex
	case pr.hasStatus:
		if k = jobKindFor(pr.status); k < 0 {
			k = unknownIndex
		}
	default:
		k = unknownIndex
	}
	if k == unknownIndex {
		u, _ := newUnknown(payload)
		return u, k, nil, nil
	}
	typ := kinds[k].Types[0]
	if pr.hasEventType {
		typ = EventType(pr.eventType)
	}
	newEvent := func() Event {
		if k == guess {
			reflect.ValueOf(tried).Elem().SetZero()
			return tried
		}
		return kinds[k].newEvent()
	}
	if !report {
		// Decode first: only a payload that does not fit needs the walk.
		ev := newEvent()
		if json.Unmarshal(payload, ev, validated) == nil {
			if !newerVersion(ev) {
				return ev, k, nil, nil
			}
		}
	}
	if shape == nil || k != guess || typ != p.typ {
		// The drift was not listed, or against another row: walk again.
		p.drift, p.breaking, p.typ = p.drift[:0], false, typ
		if _, err := p.walk(payload, schemas[k].shape); err != nil {
			return nil, 0, nil, fmt.Errorf("%w: %s", ErrInvalidPayload, describeJSONError(err)) // cannot happen: valid
		}
	}
	if pr.hasEventType {
		if _, listed := byType[p.typ]; !listed {
			p.add(DriftNewType, nil, "/event_type", "")
		}
	}
	if !p.breaking {
		// The walk validated the payload: names need no second check.
		ev := newEvent()
		err := json.Unmarshal(payload, ev, validated)
		if err == nil {
			return ev, k, p.report(), nil
		}
		// The walk and the decoder disagree: trust the decoder.
		p.addDecodeError(err, kinds[k].rtype)
	}
	return p.unknown(payload)
}

// checkEvent lists the drift of an event that decoded strictly: a type new
// to its family, enumeration values that are none of the constants, an
// event_version above the highest modelled.
func (p *parseState) checkEvent(k int, ev Event) {
	if _, lifecycle := ev.(interface{ envelope() *Envelope }); lifecycle {
		if _, listed := byType[p.typ]; !listed {
			p.add(DriftNewType, nil, "/event_type", "")
		}
	}
	p.probeEnums(k, ev)
	if newerVersion(ev) {
		p.add(DriftNewVersion, nil, "/event_version", "")
	}
}

// newerVersion reports whether ev is a lifecycle event of an event_version
// above [MaxEventVersion] (the walk applies the same rule to the raw
// number, in checkLeaf).
func newerVersion(ev Event) bool {
	e, ok := ev.(interface{ envelope() *Envelope })
	return ok && e.envelope().EventVersion > MaxEventVersion
}

// probe holds the members that decide what a payload is.
type probe struct {
	eventType    string
	status       string
	hasEventType bool
	hasStatus    bool
	workflow     bool
}

// parseState is the reusable state of one parse.
type parseState struct {
	buf      bytes.Buffer // jsontext reads a bytes.Buffer in place, without copying
	dec      jsontext.Decoder
	ptr      []byte // the JSON pointer of the value being walked
	key      []byte // scratch for driftLog keys
	memo     *driftLog
	typ      EventType
	drift    []Drift // reused: report returns a copy
	breaking bool
}

var parsers = sync.Pool{New: func() any { return new(parseState) }}

func (p *parseState) reset(payload []byte) *jsontext.Decoder {
	p.buf = *bytes.NewBuffer(payload)
	p.dec.Reset(&p.buf)
	return &p.dec
}

// release returns p to the pool, keeping no reference to the payload or
// the caller's memo.
func (p *parseState) release() {
	p.buf = bytes.Buffer{}
	p.dec.Reset(&p.buf)
	clear(p.drift) // no strings of the last payload kept in the pool
	p.memo, p.typ, p.drift, p.breaking = nil, "", p.drift[:0], false
	p.ptr, p.key = p.ptr[:0], p.key[:0]
	parsers.Put(p)
}

// report returns the drift found, sorted, and leaves none in p.
func (p *parseState) report() []Drift {
	if len(p.drift) == 0 {
		return nil
	}
	d := slices.Clone(p.drift) // one allocation: p.drift is reused
	p.drift = p.drift[:0]
	slices.SortFunc(d, func(a, b Drift) int {
		return cmp.Or(strings.Compare(a.Pointer, b.Pointer), strings.Compare(string(a.Kind), string(b.Kind)))
	})
	return d
}

// unknown returns the UnknownEvent of a payload with breaking drift.
func (p *parseState) unknown(payload []byte) (Event, int, []Drift, error) {
	u, _ := newUnknown(payload)
	if u.EventType == "" {
		u.EventType = p.typ
	}
	u.Drift = p.report()
	return u, unknownIndex, u.Drift, driftError(p.typ, u.Drift)
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

// describeJSONError describes why a payload is not one valid JSON object,
// without quoting payload content: offsets only.
func describeJSONError(err error) string {
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

// addDecodeError records as breaking drift a decoding error that the walk
// did not foresee: the member its JSON pointer names (map keys redacted;
// root is the decoded struct's pointer type) and the kind that fits best.
func (p *parseState) addDecodeError(err error, root reflect.Type) {
	kind := DriftWrongKind
	pointer := ""
	var se *json.SemanticError
	if errors.As(err, &se) {
		pointer = redactMapKeys(string(se.JSONPointer), root)
		switch {
		case se.GoType == timeType:
			kind = DriftBadTime
		case se.JSONKind == '0' && se.GoType != nil && se.GoType.Kind() >= reflect.Int && se.GoType.Kind() <= reflect.Float64:
			kind = DriftBadNumber
		}
	}
	p.ptr = append(p.ptr[:0], truncate(pointer, maxPointerLen)...)
	p.add(kind, p.ptr, "", "")
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
