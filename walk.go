package tlwebhook

import (
	"io"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// The walk: one validating pass over a payload that finds what it is and,
// given a shape, records where it departs from it.

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
