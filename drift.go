package tlwebhook

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// A Drift is one place where a verified payload departs from the event
// structs of this version of the library: Tensorlake changed its payloads.
// Additive drift (see [DriftKind.Breaking]) loses nothing: the event is
// decoded and its typed callback runs. Breaking drift means the event does
// not fit its struct: it is delivered as an [UnknownEvent] instead, and
// [ParseEvent] returns an error wrapping [ErrSchemaDrift].
//
// A Drift never holds payload content, except the enumeration value of a
// [DriftNewValue], which is the news.
type Drift struct {
	// EventType is the payload's event type; for a job or workflow
	// payload, which carries none, the type this library gives it (such as
	// [EventTypeJobCompleted]).
	EventType EventType
	// Pointer is the JSON pointer (RFC 6901) of the member, such as
	// "/data/sandbox/resources/cpus". The keys of maps (the function names
	// of fn_status) are replaced by "*". Long member names are cut.
	Pointer string
	// Kind says what changed.
	Kind DriftKind
	// Value is the enumeration value that is none of the library's
	// constants, cut to 64 bytes, for a [DriftNewValue]; "" otherwise.
	Value string
}

// Breaking reports whether d keeps the event from its typed callback.
func (d Drift) Breaking() bool { return d.Kind.Breaking() }

// String describes d on one line: type, pointer, kind and, for a
// [DriftNewValue], the value quoted.
func (d Drift) String() string {
	s := string(d.EventType) + " " + cmp.Or(d.Pointer, "/") + " " + string(d.Kind)
	if d.Kind == DriftNewValue {
		s += fmt.Sprintf(" %q", d.Value)
	}
	return s
}

// A DriftKind says how a payload departs from the library's model.
type DriftKind string

// Kinds of drift. The first three are additive, the others breaking.
const (
	// DriftNewMember: an object member the library does not model, at any
	// depth. Its value is not inspected.
	DriftNewMember DriftKind = "new_member"
	// DriftNewValue: a string of an enumeration (such as outcome_reason)
	// that is none of the library's constants. The empty string is not
	// reported.
	DriftNewValue DriftKind = "new_value"
	// DriftNewType: an event type new to a known family, such as a
	// tensorlake.sandbox.* type this version does not list; it is decoded
	// as its family's struct.
	DriftNewType DriftKind = "new_type"

	// DriftWrongKind: a modelled member of another JSON kind than its Go
	// type (a string where a number is modelled, say). Null is never
	// reported: it decodes as the zero value.
	DriftWrongKind DriftKind = "wrong_kind"
	// DriftBadNumber: a number that does not fit its Go type: an overflow,
	// or a fraction or exponent where an integer is modelled.
	DriftBadNumber DriftKind = "bad_number"
	// DriftBadTime: a time that is not an RFC 3339 string (another format,
	// or a number such as epoch seconds).
	DriftBadTime DriftKind = "bad_time"
	// DriftNewVersion: an event_version above the highest this library
	// models ([MaxEventVersion]).
	DriftNewVersion DriftKind = "new_version"
)

// Breaking reports whether drift of kind k keeps the event from its typed
// callback: true for [DriftWrongKind], [DriftBadNumber], [DriftBadTime] and
// [DriftNewVersion].
func (k DriftKind) Breaking() bool {
	switch k {
	case DriftWrongKind, DriftBadNumber, DriftBadTime, DriftNewVersion:
		return true
	}
	return false
}

// MaxEventVersion is the highest event_version of the lifecycle envelope
// this library models. A payload of a higher version is breaking drift
// ([DriftNewVersion]): its fields may mean something else.
const MaxEventVersion = 1

// CheckDrift returns the drift report of a payload: every place where it
// departs from the event structs of this version of the library, sorted by
// pointer. It is what a [Handler] logs and puts in [Observation.Drift], for
// payloads taken from a queue, a log or a capture. It does not check
// signatures: give it verified payloads only.
//
// The report is empty for a payload that fits its struct exactly, and for
// one that is none of the modelled events (an [UnknownEvent] without
// drift). A payload with a breaking drift ([Drift.Breaking]) is one that
// [ParseEvent] delivers as an UnknownEvent with an error wrapping
// [ErrSchemaDrift]. CheckDrift returns an error wrapping
// [ErrInvalidPayload] only when the payload is not a single valid JSON
// object.
func CheckDrift(payload []byte) ([]Drift, error) {
	_, _, drift, err := parse(payload, true, nil)
	if err != nil && !errors.Is(err, ErrSchemaDrift) {
		return nil, err
	}
	return drift, nil
}

// maxDriftsPerPayload bounds the report of one payload. Beyond it further
// additive drift is dropped; the first breaking drift is always kept.
const maxDriftsPerPayload = 100

// maxPointerLen bounds a reported pointer, maxSegmentLen each of its
// member names, maxValueLen a reported enumeration value.
const (
	maxPointerLen = 256
	maxSegmentLen = 64
	maxValueLen   = 64
)

// A shape is what the library models at one place of a payload, derived
// from the event structs by reflection once.
type shape struct {
	kind    shapeKind
	fields  map[string]*shape // shapeStruct: members by JSON name
	elem    *shape            // shapeMap: the values
	bits    int               // shapeInt, shapeUint, shapeFloat
	known   []string          // shapeString: the enumeration's values, or nil
	version bool              // shapeInt: the envelope's event_version
}

type shapeKind uint8

const (
	shapeAny shapeKind = iota // anything goes (raw JSON)
	shapeStruct
	shapeMap
	shapeString
	shapeTime
	shapeInt
	shapeUint
	shapeFloat
	shapeBool
	shapeRevision
)

// enumerations lists the values of every enumeration type of the event
// structs: a value not listed is reported as [DriftNewValue]. Every
// constant of these types must be listed (a test checks it).
var enumerations = map[reflect.Type][]string{
	reflect.TypeFor[JobStatus](): enumValues(JobStatusPending, JobStatusFailure, JobStatusSuccessful, JobStatusSuccess,
		JobStatusProcessing, JobStatusDetectingLayout, JobStatusLayoutDetected, JobStatusExtractingData,
		JobStatusExtractedData, JobStatusFormattingOutput, JobStatusFormattedOutput),
	reflect.TypeFor[FunctionStatus]():   enumValues(FunctionSuccess, FunctionFailure),
	reflect.TypeFor[SandboxType]():      enumValues(SandboxTypeNamed, SandboxTypeEphemeral),
	reflect.TypeFor[SandboxStatus]():    enumValues(SandboxStatusPending, SandboxStatusRunning, SandboxStatusSuspended, SandboxStatusTerminated),
	reflect.TypeFor[Outcome]():          enumValues(OutcomeSuccess, OutcomeFailure),
	reflect.TypeFor[ApplicationState](): enumValues(ApplicationStateActive, ApplicationStateDisabled),
	reflect.TypeFor[RequestStatus]():    enumValues(RequestStatusCreated, RequestStatusCompleted, RequestStatusFailed),
	reflect.TypeFor[OutcomeReason](): enumValues(OutcomeReasonUnknown, OutcomeReasonUserTerminated, OutcomeReasonTimeout,
		OutcomeReasonInternalError, OutcomeReasonConstraintUnsatisfiable, OutcomeReasonExecutorRemoved,
		OutcomeReasonOutOfMemory, OutcomeReasonContainerStartupFailed, OutcomeReasonPoolDeleted,
		OutcomeReasonContainerTerminated, OutcomeReasonBadImage, OutcomeReasonImageNotFound,
		OutcomeReasonContainerUnhealthy, OutcomeReasonFunctionError, OutcomeReasonFunctionTimeout,
		OutcomeReasonFunctionCancelled, OutcomeReasonDesiredStateRemoved, OutcomeReasonProcessCrash,
		OutcomeReasonExecutorDrained),
	reflect.TypeFor[FailureReason](): enumValues(FailureReasonUnknown, FailureReasonInternalError, FailureReasonFunctionError,
		FailureReasonFunctionTimeout, FailureReasonRequestError, FailureReasonConstraintUnsatisfiable,
		FailureReasonCancelled, FailureReasonOutOfMemory),
}

func enumValues[T ~string](vs ...T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// enumProbe finds one enumeration field of a decoded event, for the
// drift check of payloads that decoded strictly (no walk).
type enumProbe struct {
	path    []int // field indices from the event struct; pointers followed
	pointer string
	known   []string
	inMap   bool // the field is a map whose values are the enumeration
}

// schema is what the drift checks know of one row of the event table.
type schema struct {
	shape       *shape
	probes      []enumProbe
	statusField []int // job kinds: the index of the status field
}

// schemas holds one schema per row of kinds (none for UnknownEvent).
var schemas = func() []schema {
	out := make([]schema, len(kinds))
	cache := map[reflect.Type]*shape{}
	for i := range kinds {
		t := kinds[i].rtype.Elem()
		if kinds[i].rtype == reflect.TypeFor[*UnknownEvent]() {
			continue
		}
		out[i].shape = shapeOf(t, cache)
		collectProbes(t, nil, "", &out[i].probes)
		if len(kinds[i].statuses) > 0 {
			f, ok := t.FieldByName("Status")
			if !ok {
				panic("tlwebhook: job event " + t.Name() + " has no Status field")
			}
			out[i].statusField = f.Index
		}
	}
	return out
}()

var (
	timeType     = reflect.TypeFor[time.Time]()
	revisionType = reflect.TypeFor[Revision]()
	versionField = func() reflect.StructField {
		f, _ := reflect.TypeFor[Envelope]().FieldByName("EventVersion")
		return f
	}()
)

// shapeOf derives the shape of Go type t.
func shapeOf(t reflect.Type, cache map[reflect.Type]*shape) *shape {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := cache[t]; ok {
		return s
	}
	s := &shape{}
	cache[t] = s
	switch {
	case t == timeType:
		s.kind = shapeTime
	case t == revisionType:
		s.kind = shapeRevision
	case t.Kind() == reflect.Struct:
		s.kind = shapeStruct
		s.fields = map[string]*shape{}
		for f := range jsonFields(t) {
			fs := shapeOf(f.Type, cache)
			if f.Name == versionField.Name && f.Type == versionField.Type && t == reflect.TypeFor[Envelope]() {
				fs = &shape{kind: shapeInt, bits: 64, version: true}
			}
			s.fields[jsonName(f)] = fs
		}
	case t.Kind() == reflect.Map:
		s.kind = shapeMap
		s.elem = shapeOf(t.Elem(), cache)
	case t.Kind() == reflect.String:
		s.kind = shapeString
		s.known = enumerations[t]
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8: // json.RawMessage
		s.kind = shapeAny
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		s.kind, s.bits = shapeInt, t.Bits()
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		s.kind, s.bits = shapeUint, t.Bits()
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		s.kind, s.bits = shapeFloat, t.Bits()
	case t.Kind() == reflect.Bool:
		s.kind = shapeBool
	default:
		panic("tlwebhook: the drift checks do not know the Go type " + t.String())
	}
	return s
}

// jsonFields yields the fields of struct t that JSON decodes, with the
// fields of embedded structs without a tag in their place.
func jsonFields(t reflect.Type) func(yield func(reflect.StructField) bool) {
	return func(yield func(reflect.StructField) bool) {
		for _, f := range reflect.VisibleFields(t) {
			tag := f.Tag.Get("json")
			if !f.IsExported() || tag == "-" || f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
				continue
			}
			if !yield(f) {
				return
			}
		}
	}
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return cmp.Or(name, f.Name)
}

// collectProbes appends a probe for every enumeration field of struct t.
func collectProbes(t reflect.Type, path []int, pointer string, out *[]enumProbe) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType || t == revisionType:
	case t.Kind() == reflect.Struct:
		for f := range jsonFields(t) {
			collectProbes(f.Type, append(slices.Clone(path), f.Index...), pointer+"/"+jsonName(f), out)
		}
	case t.Kind() == reflect.Map:
		if known := enumerations[t.Elem()]; known != nil {
			*out = append(*out, enumProbe{path: path, pointer: pointer + "/*", known: known, inMap: true})
		}
	case t.Kind() == reflect.String:
		if known := enumerations[t]; known != nil {
			*out = append(*out, enumProbe{path: path, pointer: pointer, known: known})
		}
	}
}

// probeEnums reports the enumeration values of a strictly decoded event
// that are none of the constants.
func (p *parseState) probeEnums(k int, ev Event) {
	root := reflect.ValueOf(ev).Elem()
	for i := range schemas[k].probes {
		pr := &schemas[k].probes[i]
		v, ok := fieldByPath(root, pr.path)
		if !ok {
			continue
		}
		if !pr.inMap {
			if s := v.String(); s != "" && !slices.Contains(pr.known, s) {
				p.addString(DriftNewValue, pr.pointer, s)
			}
			continue
		}
		for it := v.MapRange(); it.Next(); {
			if s := it.Value().String(); s != "" && !slices.Contains(pr.known, s) {
				p.addString(DriftNewValue, pr.pointer, s)
			}
		}
	}
}

// fieldByPath follows path from v, through non-nil pointers.
func fieldByPath(v reflect.Value, path []int) (reflect.Value, bool) {
	for _, i := range path {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return v, false
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return v, false
		}
		v = v.Elem()
	}
	return v, true
}

// driftError returns the error wrapping [ErrSchemaDrift] for the breaking
// drift in a report: it names the first one and counts the others.
func driftError(t EventType, drift []Drift) error {
	var first *Drift
	n := 0
	for i := range drift {
		if drift[i].Breaking() {
			if first == nil {
				first = &drift[i]
			}
			n++
		}
	}
	if first == nil { // cannot happen: called for breaking drift
		return fmt.Errorf("%w: %s", ErrSchemaDrift, truncate(string(t), 128))
	}
	more := ""
	if n > 1 {
		more = fmt.Sprintf(" (and %d more)", n-1)
	}
	return fmt.Errorf("%w: %s: %s at %s%s", ErrSchemaDrift, truncate(string(t), 128), first.Kind, cmp.Or(first.Pointer, "/"), more)
}

// add records one drift at the pointer p.ptr, or at static when it is not
// empty.
func (p *parseState) add(k DriftKind, ptr []byte, static, value string) {
	if len(p.drift) >= maxDriftsPerPayload && (!k.Breaking() || p.breaking) {
		p.breaking = p.breaking || k.Breaking()
		return
	}
	p.breaking = p.breaking || k.Breaking()
	pointer := static
	if static == "" {
		pointer = p.intern(k, ptr)
	}
	if k == DriftNewValue {
		value = truncateUTF8(value, maxValueLen)
	}
	p.drift = append(p.drift, Drift{EventType: p.typ, Pointer: pointer, Kind: k, Value: value})
}

// addString is add for a pointer known in advance.
func (p *parseState) addString(k DriftKind, pointer, value string) { p.add(k, nil, pointer, value) }

// intern returns ptr as a string: the one the Handler's memo holds when it
// has reported this drift before, so that drift already reported builds
// no string.
func (p *parseState) intern(k DriftKind, ptr []byte) string {
	if p.memo == nil {
		return string(ptr)
	}
	p.key = driftKey(p.key[:0], p.typ, k, ptr)
	if s, ok := p.memo.pointer(p.key); ok {
		return s
	}
	return string(ptr)
}

// driftKey appends the memo key of a (type, pointer, kind) triple to b.
func driftKey[P string | []byte](b []byte, t EventType, k DriftKind, pointer P) []byte {
	b = append(b, k...)
	b = append(b, 0)
	b = append(b, t...)
	b = append(b, 0)
	return append(b, pointer...)
}

// truncateUTF8 cuts s to at most n bytes, at a character boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// walk reads payload, validates it as one JSON object (duplicate names and
// invalid UTF-8 included), and returns the top-level members that decide
// what it is. With a shape, it also records the payload's drift against
// it; without one, it only validates.
func (p *parseState) walk(payload []byte, s *shape) (probe, error) {
	var pr probe
	dec := p.reset(payload)
	p.ptr = p.ptr[:0]
	if dec.PeekKind() != '{' {
		if _, err := dec.ReadToken(); err != nil {
			return pr, err
		}
		return pr, errNotObject
	}
	if _, err := dec.ReadToken(); err != nil {
		return pr, err
	}
	for dec.PeekKind() == '"' {
		raw, err := dec.ReadValue()
		if err != nil {
			return pr, err
		}
		name := memberName(raw)
		var f *shape
		if s != nil {
			p.ptr = appendSegment(p.ptr[:0], name)
			if f = s.fields[string(name)]; f == nil {
				p.add(DriftNewMember, p.ptr, "", "")
			}
		}
		switch string(name) {
		case "event_type", "status":
			if dec.PeekKind() == '"' {
				v, err := dec.ReadValue()
				if err != nil {
					return pr, err
				}
				str := string(memberName(v))
				if name[0] == 'e' {
					pr.eventType, pr.hasEventType = str, true
				} else {
					pr.status, pr.hasStatus = str, true
				}
				if f != nil {
					p.checkLeaf(f, '"', v)
				}
				continue
			}
		case "workflow_name", "invocation_id", "fn_status":
			pr.workflow = pr.workflow || dec.PeekKind() != 'n'
		}
		if f != nil {
			err = p.walkValue(dec, f)
		} else {
			err = dec.SkipValue()
		}
		if err != nil {
			return pr, err
		}
	}
	if _, err := dec.ReadToken(); err != nil { // the closing brace
		return pr, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		if err == nil {
			err = errTrailing
		}
		return pr, err
	}
	return pr, nil
}

// walkValue records the drift of the next value against shape s.
func (p *parseState) walkValue(dec *jsontext.Decoder, s *shape) error {
	k := dec.PeekKind()
	if k == 'n' || s.kind == shapeAny {
		return dec.SkipValue()
	}
	if s.kind != shapeStruct && s.kind != shapeMap {
		raw, err := dec.ReadValue()
		if err == nil {
			p.checkLeaf(s, k, raw)
		}
		return err
	}
	if k != '{' {
		p.add(DriftWrongKind, p.ptr, "", "")
		return dec.SkipValue()
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() == '"' {
		raw, err := dec.ReadValue()
		if err != nil {
			return err
		}
		mark := len(p.ptr)
		if s.kind == shapeMap {
			p.ptr = append(p.ptr, "/*"...)
			err = p.walkValue(dec, s.elem)
		} else {
			name := memberName(raw)
			p.ptr = appendSegment(p.ptr, name)
			if f := s.fields[string(name)]; f != nil {
				err = p.walkValue(dec, f)
			} else {
				p.add(DriftNewMember, p.ptr, "", "")
				err = dec.SkipValue()
			}
		}
		p.ptr = p.ptr[:mark]
		if err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

// checkLeaf records the drift of one scalar value (raw, of JSON kind k)
// against shape s.
func (p *parseState) checkLeaf(s *shape, k jsontext.Kind, raw jsontext.Value) {
	switch s.kind {
	case shapeStruct, shapeMap:
		p.add(DriftWrongKind, p.ptr, "", "")
	case shapeString:
		if k != '"' {
			p.add(DriftWrongKind, p.ptr, "", "")
		} else if s.known != nil {
			v := memberName(raw)
			if len(v) > 0 && !slices.Contains(s.known, string(v)) {
				p.add(DriftNewValue, p.ptr, "", string(v))
			}
		}
	case shapeTime:
		// What encoding/json/v2 does with a time: strict RFC 3339.
		var t time.Time
		if k != '"' || t.UnmarshalText(memberName(raw)) != nil {
			p.add(DriftBadTime, p.ptr, "", "")
		}
	case shapeRevision:
		switch {
		case k == '0' && !Revision(raw).Valid():
			p.add(DriftBadNumber, p.ptr, "", "")
		case k != '0' && k != '"':
			p.add(DriftWrongKind, p.ptr, "", "")
		}
	case shapeInt, shapeUint, shapeFloat:
		if k != '0' {
			p.add(DriftWrongKind, p.ptr, "", "")
			return
		}
		var err error
		var n int64
		switch s.kind {
		case shapeInt:
			n, err = strconv.ParseInt(string(raw), 10, s.bits)
		case shapeUint:
			_, err = strconv.ParseUint(string(raw), 10, s.bits)
		default:
			_, err = strconv.ParseFloat(string(raw), s.bits)
		}
		switch {
		case err != nil:
			p.add(DriftBadNumber, p.ptr, "", "")
		case s.version && n > MaxEventVersion:
			p.add(DriftNewVersion, p.ptr, "", "")
		}
	case shapeBool:
		if k != 't' && k != 'f' {
			p.add(DriftWrongKind, p.ptr, "", "")
		}
	}
}

// appendSegment appends "/" and a member name, escaped as RFC 6901 says
// and cut to maxSegmentLen bytes, to a JSON pointer.
func appendSegment(ptr, name []byte) []byte {
	ptr = append(ptr, '/')
	n := 0
	for _, c := range name {
		if n >= maxSegmentLen && utf8.RuneStart(c) {
			return append(ptr, "..."...)
		}
		switch c {
		case '~':
			ptr = append(ptr, "~0"...)
		case '/':
			ptr = append(ptr, "~1"...)
		default:
			ptr = append(ptr, c)
		}
		n++
	}
	return ptr
}
