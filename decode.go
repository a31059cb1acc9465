package tlwebhook

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the decoder that [ParseEvent] tries first: a
// reflection-free decoder for the payload shapes Tensorlake sends. It
// produces the same Go values as the encoding/json path, with two
// allocations per event in the common case (the event with the targets of
// its pointer fields, and one buffer shared by its strings).
//
// It is deliberately narrow. Whenever a payload is unusual in a way that
// encoding/json resolves by a rule this decoder does not reproduce, it gives
// up and the encoding/json path decides, errors included:
//
//   - anything that is not valid JSON, trailing data, nesting deeper than
//     maxFastDepth;
//   - in objects that map to structs: a key that matches a field only
//     case-insensitively, a key with escapes or non-ASCII bytes, a field
//     given twice;
//   - a value of an unexpected JSON type, an integer that does not fit, a
//     time that time.Time does not accept or whose offset RFC 3339 does not
//     allow (see checkTimes);
//   - a string that is not valid UTF-8 or holds a lone surrogate escape;
//   - payloads that decode as [*UnknownEvent] or whose discriminating
//     fields have unexpected types.
//
// decode_test.go checks it against the encoding/json path on every fixture,
// on mutations of them, and under fuzzing.

// maxFastDepth bounds the nesting of values the fast decoder skips.
const maxFastDepth = 32

// fastParse decodes the common payloads without reflection. It returns
// ok=false whenever it is not certain to produce exactly what the
// encoding/json path of [ParseEvent] produces; the caller then falls back to
// that path.
func fastParse(payload []byte) (ev Event, ok bool) {
	d := fastDecoder{data: payload, strHint: min(len(payload)/4, 512)}
	var slots [numTop]span
	d.ws()
	if d.pos >= len(d.data) || d.data[d.pos] != '{' {
		return nil, false
	}
	d.pos++
	var st objState
	for {
		i := d.nextField(topNames[:], &st)
		if i < 0 {
			break
		}
		start := d.pos
		d.first(i)
		slots[i] = span{start: start, end: d.pos}
	}
	if d.bad {
		return nil, false
	}
	d.ws()
	if d.pos != len(d.data) {
		return nil, false // trailing data
	}
	ev = d.event(&slots)
	if d.bad || ev == nil {
		return nil, false
	}
	return ev, true
}

// first reads the value of top-level field i during the first pass. Most
// values are only validated and skipped, to be decoded once the payload's
// type is known. The discriminators are decoded at once, and so are data
// and usage when the discriminator they depend on came first (as it does
// in Tensorlake's payloads), which saves reading them twice.
func (d *fastDecoder) first(i int) {
	if d.pos >= len(d.data) {
		d.bad = true
		return
	}
	c := d.data[d.pos]
	switch {
	case i == topEventType && c == '"':
		d.eventType = enum(d, knownEventTypes)
		d.typed = true
		d.family = familyOf(d.eventType)
		if d.family == noFamily {
			d.bad = true // an UnknownEvent: leave it to encoding/json
		}
		return
	case i == topStatus && c == '"':
		d.status = enum(d, jobStatuses)
		d.hasStatus = true
		return
	case i == topData && d.typed:
		d.lifecycleData()
		d.dataDone = true
		return
	case i == topUsage && !d.typed && d.hasStatus && (d.status == JobStatusSuccessful || d.status == JobStatusSuccess):
		// The payload may still turn out to be of another type, with
		// fields that come later: decode to the side.
		d.usage(&d.use)
		d.usageDone = true
		return
	}
	d.skipValue(0)
}

// Families of lifecycle events.
type family uint8

const (
	noFamily family = iota
	sandboxFamily
	requestFamily
	applicationFamily
)

func familyOf(t EventType) family {
	switch s := string(t); {
	case strings.HasPrefix(s, sandboxPrefix):
		return sandboxFamily
	case strings.HasPrefix(s, requestPrefix):
		return requestFamily
	case strings.HasPrefix(s, applicationPrefix):
		return applicationFamily
	}
	return noFamily
}

// span is the position of a value in the payload; end is 0 for a field
// that is absent.
type span struct{ start, end int }

// Top-level fields: the fields that decide what a payload is (see probe),
// and the fields of every event struct decoded from the top level.
const (
	topEventType = iota
	topStatus
	topWorkflowName
	topInvocationID
	topFnStatus
	topJobID
	topError
	topCreatedAt
	topFinishedAt
	topUsage
	topEventID
	topEventVersion
	topOccurredAt
	topProjectID
	topSourceID
	topSourceRevision
	topSourceOrdinal
	topData
	numTop
)

var topNames = [numTop]string{
	topEventType:      "event_type",
	topStatus:         "status",
	topWorkflowName:   "workflow_name",
	topInvocationID:   "invocation_id",
	topFnStatus:       "fn_status",
	topJobID:          "job_id",
	topError:          "error",
	topCreatedAt:      "created_at",
	topFinishedAt:     "finished_at",
	topUsage:          "usage",
	topEventID:        "event_id",
	topEventVersion:   "event_version",
	topOccurredAt:     "occurred_at",
	topProjectID:      "project_id",
	topSourceID:       "source_id",
	topSourceRevision: "source_revision",
	topSourceOrdinal:  "source_ordinal",
	topData:           "data",
}

// Field names of the nested structs, in the order of their cases below.
var (
	usageNames = []string{"pages_parsed", "extraction_input_tokens_used",
		"extraction_output_tokens_used", "ocr_input_tokens_used", "ocr_output_tokens_used",
		"signature_detected_pages", "strikethrough_detected_pages",
		"summarization_input_tokens_used", "summarization_output_tokens_used"}
	sandboxDataNames = []string{"previous_status", "sandbox"}
	sandboxNames     = []string{"id", "name", "type", "image", "generation_id", "status",
		"outcome", "outcome_reason", "snapshot_id", "created_at", "resources"}
	resourcesNames      = []string{"cpus", "memory_mb", "disk_mb", "gpu_count", "gpu_model"}
	applicationDataName = []string{"previous_version", "previous_state", "application"}
	applicationNames    = []string{"name", "version", "state", "disabled_reason", "created_at"}
	requestDataNames    = []string{"application", "request"}
	applicationRefNames = []string{"name", "version"}
	requestNames        = []string{"id", "status", "failure_reason", "created_at", "finished_at"}
)

// Known values of the enumerations, returned without allocating.
var (
	jobStatuses       = []JobStatus{JobStatusPending, JobStatusFailure, JobStatusSuccessful, JobStatusSuccess}
	functionStatuses  = []FunctionStatus{FunctionSuccess, FunctionFailure}
	sandboxStatuses   = []SandboxStatus{SandboxStatusPending, SandboxStatusRunning, SandboxStatusSuspended, SandboxStatusTerminated}
	sandboxTypes      = []SandboxType{SandboxTypeNamed, SandboxTypeEphemeral}
	outcomes          = []Outcome{OutcomeSuccess, OutcomeFailure}
	applicationStates = []ApplicationState{ApplicationStateActive, ApplicationStateDisabled}
	requestStatuses   = []RequestStatus{RequestStatusCreated, RequestStatusCompleted, RequestStatusFailed}
	outcomeReasons    = []OutcomeReason{OutcomeReasonUnknown, OutcomeReasonUserTerminated,
		OutcomeReasonTimeout, OutcomeReasonInternalError, OutcomeReasonConstraintUnsatisfiable,
		OutcomeReasonExecutorRemoved, OutcomeReasonOutOfMemory, OutcomeReasonContainerStartupFailed,
		OutcomeReasonPoolDeleted, OutcomeReasonContainerTerminated, OutcomeReasonBadImage,
		OutcomeReasonImageNotFound, OutcomeReasonContainerUnhealthy, OutcomeReasonFunctionError,
		OutcomeReasonFunctionTimeout, OutcomeReasonFunctionCancelled, OutcomeReasonDesiredStateRemoved,
		OutcomeReasonProcessCrash, OutcomeReasonExecutorDrained}
	failureReasons = []FailureReason{FailureReasonUnknown, FailureReasonInternalError,
		FailureReasonFunctionError, FailureReasonFunctionTimeout, FailureReasonRequestError,
		FailureReasonConstraintUnsatisfiable, FailureReasonCancelled, FailureReasonOutOfMemory}
)

// fastDecoder reads one payload. Its methods work at pos and, on anything
// they do not handle, set bad; later calls then do nothing useful and the
// result is discarded.
type fastDecoder struct {
	data []byte
	pos  int
	bad  bool
	// strs holds the bytes of every decoded string; each string is a
	// substring of it, so all of them cost one allocation.
	strs strings.Builder
	// strHint is the room to reserve in strs: by default a quarter of the
	// payload (up to 512 bytes), enough for the strings of Tensorlake's
	// lifecycle events; the exact bound when the fields are known first.
	strHint int

	// Values decoded during the first pass (see first).
	eventType EventType
	typed     bool // event_type is a string
	family    family
	status    JobStatus
	hasStatus bool // status is a string
	use       Usage
	usageDone bool
	dataDone  bool
	// The lifecycle event being decoded, with the targets of its pointer
	// fields; only the one of family is used.
	sbx *sandboxBlock
	req *requestBlock
	app *applicationBlock
}

// objState tracks one object being decoded into a struct.
type objState struct {
	n    int    // members read
	seen uint64 // fields already given, by index
}

func (d *fastDecoder) ws() {
	data, i := d.data, d.pos
	for i < len(data) && isSpace[data[i]] {
		i++
	}
	d.pos = i
}

// isSpace marks JSON whitespace; plainByte marks the bytes a string can
// hold as they are: not a quote, a backslash, a control character or part
// of a multi-byte character.
var isSpace, plainByte [256]bool

func init() {
	for _, c := range " \t\r\n" {
		isSpace[c] = true
	}
	for c := 0x20; c < utf8.RuneSelf; c++ {
		plainByte[c] = c != '"' && c != '\\'
	}
}

// nextField reads the next member of the object whose '{' has been
// consumed. It returns the member's index in names, with pos at its value;
// members with other keys are validated and skipped. It returns -1 after
// the closing brace, or when the decoder gave up.
func (d *fastDecoder) nextField(names []string, st *objState) int {
	for !d.bad {
		d.ws()
		if d.pos >= len(d.data) {
			d.bad = true
			break
		}
		c := d.data[d.pos]
		if c == '}' {
			d.pos++
			return -1
		}
		if st.n > 0 {
			if c != ',' {
				d.bad = true
				break
			}
			d.pos++
			d.ws()
		}
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			d.bad = true
			break
		}
		st.n++
		ks, ke, plain := d.scanString()
		d.ws()
		if d.bad || d.pos >= len(d.data) || d.data[d.pos] != ':' {
			d.bad = true
			break
		}
		d.pos++
		d.ws()
		i := lookupField(d.data[ks:ke], plain, names)
		switch {
		case i == foldMatch:
			d.bad = true
		case i >= 0:
			bit := uint64(1) << uint(i)
			if st.seen&bit != 0 {
				d.bad = true // duplicate: encoding/json's rules differ by type
				break
			}
			st.seen |= bit
			return i
		default:
			d.skipValue(0)
		}
	}
	return -1
}

const (
	unknownField = -1
	foldMatch    = -2
)

// lookupField finds key among names. It returns foldMatch when
// encoding/json might match key to a field that is not an exact match:
// case-insensitively, or through escapes or non-ASCII folding.
func lookupField(key []byte, plain bool, names []string) int {
	if !plain {
		return foldMatch
	}
	for i, n := range names {
		if len(n) == len(key) && n[0] == key[0] && string(key) == n {
			return i
		}
	}
	upper := false
	for _, c := range key {
		if 'A' <= c && c <= 'Z' {
			upper = true
			break
		}
	}
	if upper {
		for _, n := range names {
			if asciiEqualFold(key, n) {
				return foldMatch
			}
		}
	}
	return unknownField
}

func asciiEqualFold(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// scanString validates the string at pos (its opening quote) and moves
// past it. It returns the bounds of its content, and plain when the content
// has neither escapes nor non-ASCII bytes.
func (d *fastDecoder) scanString() (start, end int, plain bool) {
	data := d.data
	plain = true
	i := d.pos + 1
	start = i
	for {
		for i < len(data) && plainByte[data[i]] {
			i++
		}
		if i >= len(data) {
			break
		}
		switch c := data[i]; {
		case c == '"':
			d.pos = i + 1
			return start, i, plain
		case c == '\\':
			plain = false
			if i+1 >= len(data) {
				d.bad = true
				return start, i, false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex4(data[i+2:i+6]) {
					d.bad = true
					return start, i, false
				}
				i += 6
			default:
				d.bad = true
				return start, i, false
			}
		case c < 0x20:
			d.bad = true
			return start, i, false
		default: // the first byte of a multi-byte character, or invalid
			plain = false
			i++
		}
	}
	d.bad = true
	return start, i, false
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// scanNumber validates the number at pos and moves past it. integer
// reports that it has neither fraction nor exponent.
func (d *fastDecoder) scanNumber() (start, end int, integer bool) {
	i := d.pos
	start = i
	integer = true
	if i < len(d.data) && d.data[i] == '-' {
		i++
	}
	switch {
	case i < len(d.data) && d.data[i] == '0':
		i++
	case i < len(d.data) && '1' <= d.data[i] && d.data[i] <= '9':
		for i < len(d.data) && '0' <= d.data[i] && d.data[i] <= '9' {
			i++
		}
	default:
		d.bad = true
		return start, i, false
	}
	if i < len(d.data) && d.data[i] == '.' {
		integer = false
		i++
		j := i
		for i < len(d.data) && '0' <= d.data[i] && d.data[i] <= '9' {
			i++
		}
		if i == j {
			d.bad = true
			return start, i, false
		}
	}
	if i < len(d.data) && (d.data[i] == 'e' || d.data[i] == 'E') {
		integer = false
		i++
		if i < len(d.data) && (d.data[i] == '+' || d.data[i] == '-') {
			i++
		}
		j := i
		for i < len(d.data) && '0' <= d.data[i] && d.data[i] <= '9' {
			i++
		}
		if i == j {
			d.bad = true
			return start, i, false
		}
	}
	d.pos = i
	return start, i, integer
}

// skipValue validates the value at pos and moves past it.
func (d *fastDecoder) skipValue(depth int) {
	if d.bad {
		return
	}
	if d.pos >= len(d.data) {
		d.bad = true
		return
	}
	switch c := d.data[d.pos]; c {
	case '"':
		d.scanString()
	case '{':
		if depth >= maxFastDepth {
			d.bad = true
			return
		}
		d.pos++
		d.ws()
		if d.pos < len(d.data) && d.data[d.pos] == '}' {
			d.pos++
			return
		}
		for !d.bad {
			d.ws()
			if d.pos >= len(d.data) || d.data[d.pos] != '"' {
				d.bad = true
				return
			}
			d.scanString()
			d.ws()
			if d.pos >= len(d.data) || d.data[d.pos] != ':' {
				d.bad = true
				return
			}
			d.pos++
			d.ws()
			d.skipValue(depth + 1)
			d.ws()
			if d.pos >= len(d.data) {
				d.bad = true
				return
			}
			switch d.data[d.pos] {
			case ',':
				d.pos++
			case '}':
				d.pos++
				return
			default:
				d.bad = true
			}
		}
	case '[':
		if depth >= maxFastDepth {
			d.bad = true
			return
		}
		d.pos++
		d.ws()
		if d.pos < len(d.data) && d.data[d.pos] == ']' {
			d.pos++
			return
		}
		for !d.bad {
			d.ws()
			d.skipValue(depth + 1)
			d.ws()
			if d.pos >= len(d.data) {
				d.bad = true
				return
			}
			switch d.data[d.pos] {
			case ',':
				d.pos++
			case ']':
				d.pos++
				return
			default:
				d.bad = true
			}
		}
	case 't':
		d.literal("true")
	case 'f':
		d.literal("false")
	case 'n':
		d.literal("null")
	default:
		d.scanNumber()
	}
}

func (d *fastDecoder) literal(lit string) {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		d.bad = true
		return
	}
	d.pos += len(lit)
}

// null consumes a null at pos and reports whether there was one.
func (d *fastDecoder) null() bool {
	if d.bad || d.pos >= len(d.data) || d.data[d.pos] != 'n' {
		return false
	}
	d.literal("null")
	return true
}

// at moves to a top-level value and reports whether the field is present.
func (d *fastDecoder) at(s span) bool {
	if s.end == 0 || d.bad {
		return false
	}
	d.pos = s.start
	return true
}

// objectStart consumes the '{' of an object at pos. It returns false for
// null (which leaves a struct field as it is) and for anything else, which
// makes the decoder give up.
func (d *fastDecoder) objectStart() bool {
	if d.bad || d.null() {
		return false
	}
	if d.pos >= len(d.data) || d.data[d.pos] != '{' {
		d.bad = true
		return false
	}
	d.pos++
	return true
}

// keep returns b as a string that shares its allocation with the other
// strings of the event.
func (d *fastDecoder) keep(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	d.reserve(len(b))
	start := d.strs.Len()
	d.strs.Write(b)
	return d.strs.String()[start:]
}

// reserve makes room for the strings of the event on the first call, for
// strHint bytes or n if more.
func (d *fastDecoder) reserve(n int) {
	if d.strs.Cap() == 0 {
		d.strs.Grow(max(n, d.strHint))
	}
}

// hintStrings sets the room reserved for strings to the raw length of the
// given top-level values, which bounds the length of the strings decoded
// from them.
func (d *fastDecoder) hintStrings(spans ...span) {
	n := 0
	for _, s := range spans {
		n += s.end - s.start
	}
	d.strHint = n
}

// text returns the content of a string, decoding escapes the way
// encoding/json does. It gives up on invalid UTF-8 and lone surrogates,
// which encoding/json replaces with U+FFFD.
func (d *fastDecoder) text(start, end int, plain bool) string {
	b := d.data[start:end]
	if plain {
		return d.keep(b)
	}
	d.reserve(len(b))
	from := d.strs.Len()
	for i := 0; i < len(b) && !d.bad; {
		if b[i] != '\\' {
			j := i
			for j < len(b) && b[j] != '\\' {
				j++
			}
			if !utf8.Valid(b[i:j]) {
				d.bad = true
				break
			}
			d.strs.Write(b[i:j])
			i = j
			continue
		}
		// scanString has validated the escapes.
		switch b[i+1] {
		case 'b':
			d.strs.WriteByte('\b')
		case 'f':
			d.strs.WriteByte('\f')
		case 'n':
			d.strs.WriteByte('\n')
		case 'r':
			d.strs.WriteByte('\r')
		case 't':
			d.strs.WriteByte('\t')
		case 'u':
			r := hex4(b[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
					d.bad = true
					break
				}
				r = utf16.DecodeRune(r, hex4(b[i+2:]))
				if r == utf8.RuneError {
					d.bad = true
					break
				}
				i += 6
			}
			d.strs.WriteRune(r)
			continue
		default: // '"', '\\', '/'
			d.strs.WriteByte(b[i+1])
		}
		i += 2
	}
	return d.strs.String()[from:]
}

// str decodes a string field; null leaves it empty.
func (d *fastDecoder) str() string {
	if d.bad || d.null() {
		return ""
	}
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		d.bad = true
		return ""
	}
	s, e, plain := d.scanString()
	if d.bad {
		return ""
	}
	return d.text(s, e, plain)
}

// enum decodes a string field of a string type, returning a known value
// without allocating.
func enum[S ~string](d *fastDecoder, known []S) S {
	if d.bad || d.null() {
		return ""
	}
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		d.bad = true
		return ""
	}
	s, e, plain := d.scanString()
	if d.bad {
		return ""
	}
	if plain {
		for _, k := range known {
			if string(d.data[s:e]) == string(k) {
				return k
			}
		}
	}
	return S(d.text(s, e, plain))
}

// optEnum decodes a nullable string field into slot: nil for null.
func optEnum[S ~string](d *fastDecoder, slot *S, known []S) *S {
	if d.bad || d.null() {
		return nil
	}
	*slot = enum(d, known)
	return slot
}

// optStr decodes a nullable string field into slot: nil for null.
func (d *fastDecoder) optStr(slot *string) *string {
	if d.bad || d.null() {
		return nil
	}
	*slot = d.str()
	return slot
}

// int64 decodes an integer field as strconv.ParseInt does for
// encoding/json; null leaves it zero.
func (d *fastDecoder) int64() int64 {
	if d.bad || d.null() {
		return 0
	}
	s, e, integer := d.scanNumber()
	if d.bad || !integer {
		d.bad = true
		return 0
	}
	b := d.data[s:e]
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	limit := uint64(1<<63 - 1)
	if neg {
		limit = 1 << 63
	}
	var n uint64
	for _, c := range b {
		if n > (limit-uint64(c-'0'))/10 {
			d.bad = true
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	if neg {
		return int64(-n)
	}
	return int64(n)
}

func (d *fastDecoder) int() int {
	n := d.int64()
	if int64(int(n)) != n {
		d.bad = true
		return 0
	}
	return int(n)
}

// float64 decodes a number field as encoding/json does; null leaves it zero.
func (d *fastDecoder) float64() float64 {
	if d.bad || d.null() {
		return 0
	}
	s, e, _ := d.scanNumber()
	if d.bad {
		return 0
	}
	f, err := strconv.ParseFloat(string(d.data[s:e]), 64)
	if err != nil {
		d.bad = true
		return 0
	}
	return f
}

// time decodes a time field with time.Time's own UnmarshalJSON, as
// encoding/json does; null leaves it zero.
func (d *fastDecoder) time() time.Time {
	if d.bad || d.null() {
		return time.Time{}
	}
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		d.bad = true
		return time.Time{}
	}
	s, e, _ := d.scanString()
	var t time.Time
	if d.bad || t.UnmarshalJSON(d.data[s-1:e+1]) != nil {
		d.bad = true
		return time.Time{}
	}
	if !timeInRange(t) {
		// ParseEvent rejects offsets that RFC 3339 does not allow
		// (checkTimes); leave the error to the encoding/json path.
		d.bad = true
		return time.Time{}
	}
	return t
}

// optTime decodes a nullable time field into slot: nil for null.
func (d *fastDecoder) optTime(slot *time.Time) *time.Time {
	if d.bad || d.null() {
		return nil
	}
	*slot = d.time()
	return slot
}

// revision decodes a source_revision as [Revision.UnmarshalJSON] does.
func (d *fastDecoder) revision() Revision {
	if d.bad || d.null() || d.pos >= len(d.data) {
		return ""
	}
	if d.data[d.pos] == '"' {
		return Revision(d.str())
	}
	s, e, _ := d.scanNumber()
	if d.bad || !Revision(d.data[s:e]).Valid() {
		d.bad = true
		return ""
	}
	return Revision(d.keep(d.data[s:e]))
}

// event decodes the payload whose top-level fields are in slots, following
// ParseEvent's order of probes. It returns nil for payloads it leaves to
// encoding/json.
func (d *fastDecoder) event(slots *[numTop]span) Event {
	if slots[topEventType].end != 0 {
		if !d.typed {
			return nil // event_type is not a string
		}
		if !d.dataDone && d.at(slots[topData]) {
			d.lifecycleData()
		}
		return d.lifecycle(slots)
	}
	if d.present(slots[topWorkflowName]) || d.present(slots[topInvocationID]) || d.present(slots[topFnStatus]) {
		return d.workflow(slots)
	}
	if !d.hasStatus {
		return nil
	}
	d.hintStrings(slots[topJobID], slots[topError])
	switch status := d.status; status {
	case JobStatusPending:
		ev := &JobCreated{Status: status}
		if d.at(slots[topJobID]) {
			ev.JobID = d.str()
		}
		if d.at(slots[topCreatedAt]) {
			ev.CreatedAt = d.time()
		}
		return ev
	case JobStatusFailure:
		ev := &JobFailed{Status: status}
		if d.at(slots[topJobID]) {
			ev.JobID = d.str()
		}
		if d.at(slots[topError]) {
			ev.Error = d.str()
		}
		if d.at(slots[topCreatedAt]) {
			ev.CreatedAt = d.time()
		}
		if d.at(slots[topFinishedAt]) {
			ev.FinishedAt = d.time()
		}
		return ev
	case JobStatusSuccessful, JobStatusSuccess:
		ev := &JobCompleted{Status: status}
		if d.at(slots[topJobID]) {
			ev.JobID = d.str()
		}
		if d.at(slots[topCreatedAt]) {
			ev.CreatedAt = d.time()
		}
		if d.at(slots[topFinishedAt]) {
			ev.FinishedAt = d.time()
		}
		if d.usageDone {
			ev.Usage = d.use
		} else if d.at(slots[topUsage]) {
			d.usage(&ev.Usage)
		}
		return ev
	}
	return nil
}

// present reports whether a top-level field is given and not null.
func (d *fastDecoder) present(s span) bool {
	return s.end != 0 && string(d.data[s.start:s.end]) != "null"
}

func (d *fastDecoder) usage(u *Usage) {
	if !d.objectStart() {
		return
	}
	var st objState
	for {
		switch d.nextField(usageNames, &st) {
		case 0:
			u.PagesParsed = d.int64()
		case 1:
			u.ExtractionInputTokensUsed = d.int64()
		case 2:
			u.ExtractionOutputTokensUsed = d.int64()
		case 3:
			u.OCRInputTokensUsed = d.int64()
		case 4:
			u.OCROutputTokensUsed = d.int64()
		case 5:
			u.SignatureDetectedPages = d.int64()
		case 6:
			u.StrikethroughDetectedPages = d.int64()
		case 7:
			u.SummarizationInputTokensUsed = d.int64()
		case 8:
			u.SummarizationOutputTokensUsed = d.int64()
		default:
			return
		}
	}
}

func (d *fastDecoder) workflow(slots *[numTop]span) Event {
	d.hintStrings(slots[topWorkflowName], slots[topInvocationID], slots[topFnStatus])
	ev := new(WorkflowCompleted)
	if d.at(slots[topWorkflowName]) {
		ev.WorkflowName = d.str()
	}
	if d.at(slots[topInvocationID]) {
		ev.InvocationID = d.str()
	}
	if d.at(slots[topFnStatus]) && !d.null() {
		if d.data[d.pos] != '{' {
			d.bad = true
			return nil
		}
		d.pos++
		// A map takes every key as it is, the last of duplicates winning,
		// as encoding/json does. The first pass has validated the object,
		// so only its values' types remain to check.
		ev.FnStatus = make(map[string]FunctionStatus)
		for n := 0; !d.bad; n++ {
			d.ws()
			if d.data[d.pos] == '}' {
				d.pos++
				break
			}
			if n > 0 {
				d.pos++ // ','
				d.ws()
			}
			ks, ke, plain := d.scanString()
			name := d.text(ks, ke, plain)
			d.ws()
			d.pos++ // ':'
			d.ws()
			ev.FnStatus[name] = enum(d, functionStatuses)
		}
	}
	return ev
}

// envelope decodes the envelope fields of a lifecycle event of type t.
func (d *fastDecoder) envelope(env *Envelope, slots *[numTop]span, t EventType) {
	env.EventType = t
	if d.at(slots[topEventID]) {
		env.EventID = d.str()
	}
	if d.at(slots[topEventVersion]) {
		env.EventVersion = d.int()
	}
	if d.at(slots[topOccurredAt]) {
		env.OccurredAt = d.time()
	}
	if d.at(slots[topProjectID]) {
		env.ProjectID = d.str()
	}
	if d.at(slots[topSourceID]) {
		env.SourceID = d.str()
	}
	if d.at(slots[topSourceRevision]) {
		env.SourceRevision = d.revision()
	}
	if d.at(slots[topSourceOrdinal]) {
		env.SourceOrdinal = d.int64()
	}
}

// sandboxBlock holds a SandboxEvent and the targets of its pointer fields,
// so that decoding one costs one allocation.
type sandboxBlock struct {
	ev             SandboxEvent
	previousStatus SandboxStatus
	name           string
	image          string
	outcome        Outcome
	outcomeReason  OutcomeReason
	snapshotID     string
	gpuModel       string
}

// lifecycleData decodes the data of a lifecycle event of d.family.
func (d *fastDecoder) lifecycleData() {
	switch d.family {
	case sandboxFamily:
		d.sbx = new(sandboxBlock)
		d.sandboxData(d.sbx)
	case requestFamily:
		d.req = new(requestBlock)
		d.requestData(d.req)
	case applicationFamily:
		d.app = new(applicationBlock)
		d.applicationData(d.app)
	}
}

// lifecycle completes the lifecycle event of d.family with its envelope.
func (d *fastDecoder) lifecycle(slots *[numTop]span) Event {
	switch d.family {
	case sandboxFamily:
		if d.sbx == nil {
			d.sbx = new(sandboxBlock)
		}
		d.envelope(&d.sbx.ev.Envelope, slots, d.eventType)
		return &d.sbx.ev
	case requestFamily:
		if d.req == nil {
			d.req = new(requestBlock)
		}
		d.envelope(&d.req.ev.Envelope, slots, d.eventType)
		return &d.req.ev
	case applicationFamily:
		if d.app == nil {
			d.app = new(applicationBlock)
		}
		d.envelope(&d.app.ev.Envelope, slots, d.eventType)
		return &d.app.ev
	}
	return nil
}

func (d *fastDecoder) sandboxData(b *sandboxBlock) {
	if !d.objectStart() {
		return
	}
	var st objState
	for {
		switch d.nextField(sandboxDataNames, &st) {
		case 0:
			b.ev.Data.PreviousStatus = optEnum(d, &b.previousStatus, sandboxStatuses)
		case 1:
			d.sandbox(b)
		default:
			return
		}
	}
}

func (d *fastDecoder) sandbox(b *sandboxBlock) {
	if !d.objectStart() {
		return
	}
	s := &b.ev.Data.Sandbox
	var st objState
	for {
		switch d.nextField(sandboxNames, &st) {
		case 0:
			s.ID = d.str()
		case 1:
			s.Name = d.optStr(&b.name)
		case 2:
			s.Type = enum(d, sandboxTypes)
		case 3:
			s.Image = d.optStr(&b.image)
		case 4:
			s.GenerationID = d.int64()
		case 5:
			s.Status = enum(d, sandboxStatuses)
		case 6:
			s.Outcome = optEnum(d, &b.outcome, outcomes)
		case 7:
			s.OutcomeReason = optEnum(d, &b.outcomeReason, outcomeReasons)
		case 8:
			s.SnapshotID = d.optStr(&b.snapshotID)
		case 9:
			s.CreatedAt = d.time()
		case 10:
			d.resources(&s.Resources, &b.gpuModel)
		default:
			return
		}
	}
}

func (d *fastDecoder) resources(r *Resources, gpuModel *string) {
	if !d.objectStart() {
		return
	}
	var st objState
	for {
		switch d.nextField(resourcesNames, &st) {
		case 0:
			r.CPUs = d.float64()
		case 1:
			r.MemoryMB = d.int64()
		case 2:
			r.DiskMB = d.int64()
		case 3:
			r.GPUCount = d.int64()
		case 4:
			r.GPUModel = d.optStr(gpuModel)
		default:
			return
		}
	}
}

// applicationBlock is like sandboxBlock, for an ApplicationEvent.
type applicationBlock struct {
	ev              ApplicationEvent
	previousVersion string
	previousState   ApplicationState
	disabledReason  string
}

func (d *fastDecoder) applicationData(b *applicationBlock) {
	if !d.objectStart() {
		return
	}
	var st objState
	for {
		switch d.nextField(applicationDataName, &st) {
		case 0:
			b.ev.Data.PreviousVersion = d.optStr(&b.previousVersion)
		case 1:
			b.ev.Data.PreviousState = optEnum(d, &b.previousState, applicationStates)
		case 2:
			d.application(&b.ev.Data.Application, &b.disabledReason)
		default:
			return
		}
	}
}

func (d *fastDecoder) application(a *Application, disabledReason *string) {
	if !d.objectStart() {
		return
	}
	var st objState
	for {
		switch d.nextField(applicationNames, &st) {
		case 0:
			a.Name = d.str()
		case 1:
			a.Version = d.str()
		case 2:
			a.State = enum(d, applicationStates)
		case 3:
			a.DisabledReason = d.optStr(disabledReason)
		case 4:
			a.CreatedAt = d.time()
		default:
			return
		}
	}
}

// requestBlock is like sandboxBlock, for a RequestEvent.
type requestBlock struct {
	ev            RequestEvent
	failureReason FailureReason
	finishedAt    time.Time
}

func (d *fastDecoder) requestData(b *requestBlock) {
	if !d.objectStart() {
		return
	}
	var st objState
	for {
		switch d.nextField(requestDataNames, &st) {
		case 0:
			d.applicationRef(&b.ev.Data.Application)
		case 1:
			d.request(b)
		default:
			return
		}
	}
}

func (d *fastDecoder) applicationRef(a *ApplicationRef) {
	if !d.objectStart() {
		return
	}
	var st objState
	for {
		switch d.nextField(applicationRefNames, &st) {
		case 0:
			a.Name = d.str()
		case 1:
			a.Version = d.str()
		default:
			return
		}
	}
}

func (d *fastDecoder) request(b *requestBlock) {
	if !d.objectStart() {
		return
	}
	r := &b.ev.Data.Request
	var st objState
	for {
		switch d.nextField(requestNames, &st) {
		case 0:
			r.ID = d.str()
		case 1:
			r.Status = enum(d, requestStatuses)
		case 2:
			r.FailureReason = optEnum(d, &b.failureReason, failureReasons)
		case 3:
			r.CreatedAt = d.time()
		case 4:
			r.FinishedAt = d.optTime(&b.finishedAt)
		default:
			return
		}
	}
}
