package tlwebhook

import (
	"cmp"
	"errors"
	"fmt"
	"unicode/utf8"
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
