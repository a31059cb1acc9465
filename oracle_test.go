package tlwebhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// oracleParse is an independent reference for ParseEvent: the encoding/json
// (v1) decoder of the library's first versions, written out here without
// the event table, with the strict rules of encoding/json/v2 checked first
// by their own code:
//
//   - the payload is one JSON object, valid UTF-8, with no lone surrogate
//     escape, and no object anywhere in it has two members of one name;
//   - member names match case-sensitively: a member of an event struct's
//     level whose name differs from a field's json name only in case (or by
//     Unicode folding) is ignored, where encoding/json v1 would match it.
//
// Its classification follows the wire format's rules (event_type, workflow
// fields, job status). A modelled event that does not decode (or a
// lifecycle event of a version above 1) is breaking drift: an UnknownEvent
// (naming the modelled type of a job or workflow payload) and an error
// wrapping ErrSchemaDrift.
func oracleParse(payload []byte) (Event, error) {
	if err := oracleStrict(payload); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPayload, err)
	}
	exact := oracleExactNames(payload)
	var p struct {
		EventType    json.RawMessage `json:"event_type"`
		Status       json.RawMessage `json:"status"`
		WorkflowName json.RawMessage `json:"workflow_name"`
		InvocationID json.RawMessage `json:"invocation_id"`
		FnStatus     json.RawMessage `json:"fn_status"`
	}
	if err := json.Unmarshal(exact, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPayload, err)
	}
	drift := func(t string, err error) (Event, error) {
		u := oracleUnknown(payload)
		if u.EventType == "" {
			u.EventType = EventType(t)
		}
		return u, fmt.Errorf("%w: %s: %v", ErrSchemaDrift, t, err)
	}
	if t, ok := oracleString(p.EventType); ok {
		var ev Event
		switch {
		case strings.HasPrefix(t, "tensorlake.sandbox."):
			ev = new(SandboxEvent)
		case strings.HasPrefix(t, "tensorlake.application.request."):
			ev = new(RequestEvent)
		case strings.HasPrefix(t, "tensorlake.application."):
			ev = new(ApplicationEvent)
		default:
			return oracleUnknown(payload), nil
		}
		if err := oracleDecode(exact, ev); err != nil {
			return drift(t, err)
		}
		var version struct {
			V json.RawMessage `json:"event_version"`
		}
		_ = json.Unmarshal(exact, &version)
		var n int
		if oraclePresent(version.V) && json.Unmarshal(version.V, &n) == nil && n > 1 {
			return drift(t, errors.New("event_version above 1"))
		}
		return ev, nil
	}
	if oraclePresent(p.WorkflowName) || oraclePresent(p.InvocationID) || oraclePresent(p.FnStatus) {
		ev := new(WorkflowCompleted)
		if err := oracleDecode(exact, ev); err != nil {
			return drift("tlwebhook.workflow.completed", err)
		}
		return ev, nil
	}
	if s, ok := oracleString(p.Status); ok {
		var ev Event
		switch s {
		case "pending":
			ev = new(JobCreated)
		case "failure":
			ev = new(JobFailed)
		case "successful", "success":
			ev = new(JobCompleted)
		}
		if ev != nil {
			if err := oracleDecode(exact, ev); err != nil {
				return drift(string(ev.Type()), err)
			}
			return ev, nil
		}
	}
	return oracleUnknown(payload), nil
}

// oracleDecode decodes with encoding/json, then rejects times that RFC 3339
// does not allow (an offset of 24 hours or more), which time.Parse accepts.
func oracleDecode(payload []byte, ev Event) error {
	if err := json.Unmarshal(payload, ev); err != nil {
		return err
	}
	if p := oracleBadTime(payload, oracleTimePaths(ev)); p != "" {
		return errors.New("time at " + p + " is not strict RFC 3339")
	}
	var ts []time.Time
	switch e := ev.(type) {
	case *JobCreated:
		ts = append(ts, e.CreatedAt)
	case *JobFailed:
		ts = append(ts, e.CreatedAt, e.FinishedAt)
	case *JobCompleted:
		ts = append(ts, e.CreatedAt, e.FinishedAt)
	case *SandboxEvent:
		ts = append(ts, e.OccurredAt, e.Data.Sandbox.CreatedAt)
	case *ApplicationEvent:
		ts = append(ts, e.OccurredAt, e.Data.Application.CreatedAt)
	case *RequestEvent:
		ts = append(ts, e.OccurredAt, e.Data.Request.CreatedAt)
		if e.Data.Request.FinishedAt != nil {
			ts = append(ts, *e.Data.Request.FinishedAt)
		}
	}
	for _, t := range ts {
		if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
			return errors.New("time offset out of range")
		}
	}
	return nil
}

func oracleUnknown(payload []byte) *UnknownEvent {
	exact := oracleExactNames(payload)
	u := &UnknownEvent{Raw: bytes.Clone(payload)}
	var le struct {
		EventID        json.RawMessage `json:"event_id"`
		EventType      json.RawMessage `json:"event_type"`
		EventVersion   json.RawMessage `json:"event_version"`
		OccurredAt     json.RawMessage `json:"occurred_at"`
		ProjectID      json.RawMessage `json:"project_id"`
		SourceID       json.RawMessage `json:"source_id"`
		SourceRevision json.RawMessage `json:"source_revision"`
		SourceOrdinal  json.RawMessage `json:"source_ordinal"`
	}
	_ = json.Unmarshal(exact, &le)
	oracleField(le.EventID, &u.EventID)
	oracleField(le.EventType, &u.Envelope.EventType)
	oracleField(le.EventVersion, &u.EventVersion)
	oracleField(le.ProjectID, &u.ProjectID)
	oracleField(le.SourceID, &u.SourceID)
	oracleField(le.SourceRevision, &u.SourceRevision)
	oracleField(le.SourceOrdinal, &u.SourceOrdinal)
	var t time.Time
	if oracleBadTime(payload, []string{"/occurred_at"}) == "" && oracleField(le.OccurredAt, &t) {
		if _, off := t.Zone(); off > -24*3600 && off < 24*3600 {
			u.OccurredAt = t
		}
	}
	// Data is raw: taken from the payload as sent, names and all.
	if v, err := decodeOrdered(payload); err == nil {
		if o, ok := v.(*orderedObject); ok {
			for i, k := range o.keys {
				if k == "data" {
					var b bytes.Buffer
					encodeOrdered(&b, o.vals[i])
					if b.String() != "null" {
						u.Data = b.Bytes()
					}
				}
			}
		}
	}
	return u
}

func oracleField[T any](raw json.RawMessage, dst *T) bool {
	if !oraclePresent(raw) {
		return false
	}
	var v T
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	*dst = v
	return true
}

func oraclePresent(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

func oracleString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// oracleStrict checks the rules encoding/json v1 does not: one object,
// valid UTF-8 and surrogates, no duplicate member names.
func oracleStrict(payload []byte) error {
	if !utf8.Valid(payload) {
		return errors.New("invalid UTF-8")
	}
	if loneSurrogate(payload) {
		return errors.New("lone surrogate")
	}
	trimmed := bytes.TrimLeft(payload, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(payload) {
		return errors.New("not one JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return nil
		}
		seen := map[string]bool{}
		for dec.More() {
			if d == '{' {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				if seen[k.(string)] {
					return errors.New("duplicate member name")
				}
				seen[k.(string)] = true
			}
			if err := walk(); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	if err := walk(); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}

// loneSurrogate reports whether a string escape in payload is a UTF-16
// surrogate that is not part of a pair.
func loneSurrogate(payload []byte) bool {
	s := string(payload)
	for i := 0; i+6 <= len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		if s[i+1] != 'u' {
			i++ // skip the escaped character, which may be a backslash
			continue
		}
		var r rune
		if _, err := fmt.Sscanf(s[i+2:i+6], "%04x", &r); err != nil {
			continue
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			var lo rune
			if i+12 > len(s) || s[i+6:i+8] != `\u` {
				return true
			}
			if _, err := fmt.Sscanf(s[i+8:i+12], "%04x", &lo); err != nil || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
			continue
		}
		i += 5
	}
	return false
}

// oracleExactNames rewrites a valid payload without the members whose
// names encoding/json v1 would match to a struct field only by folding
// case: names with an upper-case letter or a non-ASCII character (every
// json name of the event structs is lower-case ASCII). The members of the
// fn_status map are kept: map keys are data, not field names.
func oracleExactNames(payload []byte) []byte {
	var drop func(v any, inMap bool) any
	drop = func(v any, inMap bool) any {
		switch x := v.(type) {
		case *orderedObject:
			out := &orderedObject{}
			for i, k := range x.keys {
				if !inMap && strings.ToLower(k) != k || !inMap && !isASCII(k) {
					continue
				}
				out.keys = append(out.keys, k)
				out.vals = append(out.vals, drop(x.vals[i], k == "fn_status" && !inMap))
			}
			return out
		case []any:
			for i := range x {
				x[i] = drop(x[i], false)
			}
			return x
		}
		return v
	}
	v, err := decodeOrdered(payload)
	if err != nil {
		return payload
	}
	var b bytes.Buffer
	encodeOrdered(&b, drop(v, false))
	return b.Bytes()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

type orderedObject struct {
	keys []string
	vals []any
}

func decodeOrdered(payload []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var value func() (any, error)
	value = func() (any, error) {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch d := tok.(type) {
		case json.Delim:
			if d == '[' {
				var arr []any
				for dec.More() {
					v, err := value()
					if err != nil {
						return nil, err
					}
					arr = append(arr, v)
				}
				_, err := dec.Token()
				return arr, err
			}
			o := &orderedObject{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := value()
				if err != nil {
					return nil, err
				}
				o.keys = append(o.keys, k.(string))
				o.vals = append(o.vals, v)
			}
			_, err := dec.Token()
			return o, err
		}
		return tok, nil
	}
	return value()
}

func encodeOrdered(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case *orderedObject:
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			encodeOrdered(b, x.vals[i])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeOrdered(b, e)
		}
		b.WriteByte(']')
	case json.Number:
		b.WriteString(string(x))
	default:
		eb, _ := json.Marshal(x)
		b.Write(eb)
	}
}

// oracleTimePaths lists where the struct of ev has time fields.
func oracleTimePaths(ev Event) []string {
	switch ev.(type) {
	case *JobCreated:
		return []string{"/created_at"}
	case *JobFailed, *JobCompleted:
		return []string{"/created_at", "/finished_at"}
	case *SandboxEvent:
		return []string{"/occurred_at", "/data/sandbox/created_at"}
	case *ApplicationEvent:
		return []string{"/occurred_at", "/data/application/created_at"}
	case *RequestEvent:
		return []string{"/occurred_at", "/data/request/created_at", "/data/request/finished_at"}
	}
	return nil
}

// oracleBadTime returns the first of paths (JSON pointers through objects)
// holding a string that time.Parse accepts as RFC 3339 but RFC 3339 does
// not: a one-digit hour, a comma before the fraction, a zone offset whose
// hour is 24 or more or whose minute is 60 or more (the checks documented by
// encoding/json/v2, go.dev/issue/57912). It returns "" when there is none.
func oracleBadTime(payload []byte, paths []string) string {
	root, err := decodeOrdered(payload)
	if err != nil {
		return ""
	}
	for _, p := range paths {
		v := root
		for _, name := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
			o, ok := v.(*orderedObject)
			if !ok {
				v = nil
				break
			}
			var next any
			for i, k := range o.keys {
				if k == name {
					next = o.vals[i]
				}
			}
			v = next
		}
		s, ok := v.(string)
		if !ok {
			continue
		}
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			continue // rejected by both decoders already
		}
		switch {
		case s[len("2006-01-02T")+1] == ':':
			return p
		case len(s) > len("2006-01-02T15:04:05") && s[len("2006-01-02T15:04:05")] == ',':
			return p
		case s[len(s)-1] != 'Z' && s[len(s)-1] != 'z':
			var hh, mm int
			if _, err := fmt.Sscanf(s[len(s)-5:], "%2d:%2d", &hh, &mm); err == nil && (hh >= 24 || mm >= 60) {
				return p
			}
		}
	}
	return ""
}
