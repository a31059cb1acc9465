package tlwebhook

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
	"time"
)

// What the drift checks know of the event structs: the shape of every
// row of the event table (its members by JSON name and their kinds),
// derived by reflection once, the enumerations' values, and the probes
// that check the enumerations of an event that decoded strictly.

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
	reflect.TypeFor[FunctionStatus]():   enumValues(FunctionStatusSuccess, FunctionStatusFailure),
	reflect.TypeFor[SandboxType]():      enumValues(SandboxTypeNamed, SandboxTypeEphemeral),
	reflect.TypeFor[SandboxStatus]():    enumValues(SandboxStatusPending, SandboxStatusRunning, SandboxStatusSuspended, SandboxStatusTerminated),
	reflect.TypeFor[SandboxOutcome]():   enumValues(SandboxOutcomeSuccess, SandboxOutcomeFailure),
	reflect.TypeFor[ApplicationState](): enumValues(ApplicationStateActive, ApplicationStateDisabled),
	reflect.TypeFor[RequestStatus]():    enumValues(RequestStatusCreated, RequestStatusCompleted, RequestStatusFailed),
	reflect.TypeFor[SandboxOutcomeReason](): enumValues(SandboxOutcomeReasonUnknown, SandboxOutcomeReasonUserTerminated, SandboxOutcomeReasonTimeout,
		SandboxOutcomeReasonInternalError, SandboxOutcomeReasonConstraintUnsatisfiable, SandboxOutcomeReasonExecutorRemoved,
		SandboxOutcomeReasonOutOfMemory, SandboxOutcomeReasonContainerStartupFailed, SandboxOutcomeReasonPoolDeleted,
		SandboxOutcomeReasonContainerTerminated, SandboxOutcomeReasonBadImage, SandboxOutcomeReasonImageNotFound,
		SandboxOutcomeReasonContainerUnhealthy, SandboxOutcomeReasonFunctionError, SandboxOutcomeReasonFunctionTimeout,
		SandboxOutcomeReasonFunctionCancelled, SandboxOutcomeReasonDesiredStateRemoved, SandboxOutcomeReasonProcessCrash,
		SandboxOutcomeReasonExecutorDrained),
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
			if f.Name == versionField.Name && f.Type == versionField.Type && declaringType(t, f) == reflect.TypeFor[Envelope]() {
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

// declaringType returns the struct that declares field f of struct t: t
// itself, or the embedded struct that f is promoted from (the envelope's
// fields reach the lifecycle events that way).
func declaringType(t reflect.Type, f reflect.StructField) reflect.Type {
	if len(f.Index) > 1 {
		return t.FieldByIndex(f.Index[:len(f.Index)-1]).Type
	}
	return t
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
