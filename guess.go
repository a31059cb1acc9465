package tlwebhook

import (
	"bytes"
	"reflect"
	"slices"
)

// Guessing a payload's row of the event table from its bytes, before it is
// decoded, and confirming the guess on the decoded event.

// guessHead is how far into a payload guessKind looks first: Tensorlake
// sends the discriminators among the first members.
const guessHead = 512

// guessKind guesses the row of a payload from its bytes, without parsing:
// the value of its first "event_type" member, else the value of its first
// "status" member (each looked for near the start first), else its
// workflow members. It returns -1 when it has no guess, and the event type
// of a lifecycle guess. The guess is checked by confirmKind once the
// payload decoded, and by the walk when it did not.
func guessKind(payload []byte) (int, []byte) {
	head := payload[:min(len(payload), guessHead)]
	for _, in := range [][]byte{head, payload} {
		if t, ok := stringAfter(in, `"event_type"`); ok {
			if i, ok := byType[EventType(t)]; ok {
				return i, t
			}
			return familyOfBytes(t), t
		}
		if s, ok := stringAfter(in, `"status"`); ok {
			if k := jobKindFor(string(s)); k >= 0 {
				return k, nil
			}
		}
		if len(head) == len(payload) {
			break
		}
	}
	for _, name := range []string{`"workflow_name"`, `"invocation_id"`, `"fn_status"`} {
		if bytes.Contains(payload, []byte(name)) {
			return workflowIndex, nil
		}
	}
	return -1, nil
}

// stringAfter returns the unescaped string that follows the first
// occurrence of name and a colon in payload, if there is one.
func stringAfter(payload []byte, name string) ([]byte, bool) {
	i := bytes.Index(payload, []byte(name))
	if i < 0 {
		return nil, false
	}
	b := bytes.TrimLeft(payload[i+len(name):], " \t\r\n")
	if len(b) == 0 || b[0] != ':' {
		return nil, false
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	if len(b) == 0 || b[0] != '"' {
		return nil, false
	}
	end := bytes.IndexAny(b[1:], `"\`)
	if end < 0 || b[1+end] != '"' {
		return nil, false
	}
	return b[1 : 1+end], true
}

// familyOfBytes is familyOf for a type held in bytes.
func familyOfBytes(t []byte) int {
	best := -1
	for i := range kinds {
		p := kinds[i].Prefix
		if p != "" && bytes.HasPrefix(t, []byte(p)) && (best < 0 || len(p) > len(kinds[best].Prefix)) {
			best = i
		}
	}
	if best < 0 {
		return unknownIndex
	}
	return best
}

// confirmKind reports whether a payload decoded strictly as row k is of
// row k, by the rules of the slow path: the strict decoding refused any
// member that the row's struct does not model (the discriminators of the
// other rows among them), so the row's own discriminator decides.
func confirmKind(k int, ev Event) bool {
	switch {
	case kinds[k].workflow:
		w := ev.(*WorkflowCompleted)
		return w.WorkflowName != "" || w.InvocationID != "" || w.FnStatus != nil
	case len(kinds[k].statuses) > 0:
		s := reflect.ValueOf(ev).Elem().FieldByIndex(schemas[k].statusField).String()
		return slices.Contains(kinds[k].statuses, JobStatus(s))
	}
	t := ev.Type()
	return t != "" && lifecycleKind(string(t)) == k
}
