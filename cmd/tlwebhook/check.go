package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strconv"

	"github.com/tlwebhook/tlwebhook"
)

// check is registered here, beside its code: the command table in main.go
// lists the others.
func init() {
	commands = append(commands, command{"check", "print the drift report of captured deliveries or payloads", runCheck})
}

func runCheck(_ context.Context, e *env, args []string) int {
	f := newFlags("check", "FILE...", `
Check reads each FILE ("-" for stdin): a request captured by "listen -save"
or a raw JSON payload, and prints how its payload departs from the event
structs of this version of tlwebhook (its drift, see tlwebhook.CheckDrift):

  drift file=FILE type=TYPE pointer=POINTER kind=KIND breaking=BOOL [value=VALUE]
  ok file=FILE type=TYPE                   (a payload that fits exactly)
  invalid file=FILE reason=...             (unreadable, or not a JSON object)
  summary files=N drift=N breaking=N invalid=N

Additive drift (new_member, new_value, new_type) is decoded and reaches its
typed callback; breaking drift (wrong_kind, bad_number, bad_time,
new_version) reaches OnUnknown or OnAny instead, or fails with 500 without
them. Only an unlisted enumeration value (kind new_value) is shown, cut to
64 bytes; no other payload content is printed. Check does not verify
signatures: use "tlwebhook verify -request FILE" for that.

Exit status: 0 when no payload has breaking drift, 1 when one has or a file
is invalid, 2 on a usage error.`)
	// Not f.parse, which refuses positional arguments.
	switch err := f.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		f.printUsage(e.stdout)
		return exitOK
	case err != nil:
		return f.usageError(e, "%v", err)
	case f.NArg() == 0:
		return f.usageError(e, "no FILE given")
	}
	var drifts, breaking, invalid int
	out := &lineWriter{w: e.stdout}
	for _, name := range f.Args() {
		file := kv("file", name)
		payload, err := checkInput(e, name)
		if err == nil {
			var drift []tlwebhook.Drift
			if drift, err = tlwebhook.CheckDrift(payload); err == nil {
				ev, _ := tlwebhook.ParseEvent(payload)
				typ := kv("type", typeName(ev.Type()))
				if len(drift) == 0 {
					out.println("ok", file, typ)
				}
				for _, d := range drift {
					out.println(append([]string{"drift", file}, driftFields(d)...)...)
					drifts++
					if d.Breaking() {
						breaking++
					}
				}
				continue
			}
		}
		invalid++
		out.println("invalid", file, kv("reason", err.Error()))
	}
	out.println("summary", kv("files", strconv.Itoa(f.NArg())), kv("drift", strconv.Itoa(drifts)),
		kv("breaking", strconv.Itoa(breaking)), kv("invalid", strconv.Itoa(invalid)))
	if breaking > 0 || invalid > 0 {
		return exitFailure
	}
	return exitOK
}

// checkInput returns the payload of a file: the body of a captured
// request, or the file itself when it is not one (a raw payload starts
// with "{", a capture with its request line).
func checkInput(e *env, name string) ([]byte, error) {
	data, err := readInput(e, name)
	if err != nil {
		return nil, err
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] == '{' || t[0] == '[' || t[0] == '"' {
		return data, nil
	}
	_, body, _, err := readRequest(data)
	if err != nil {
		return nil, errors.New("neither a JSON payload nor a captured HTTP request: " + err.Error())
	}
	return body, nil
}

// driftFields describes one drift as key=value fields: type, pointer,
// kind, breaking and, for a new enumeration value, the value.
func driftFields(d tlwebhook.Drift) []string {
	f := []string{kv("type", typeName(d.EventType)), kv("pointer", d.Pointer), kv("kind", string(d.Kind)),
		kv("breaking", strconv.FormatBool(d.Breaking()))}
	if d.Kind == tlwebhook.DriftNewValue {
		f = append(f, kv("value", d.Value))
	}
	return f
}

// typeName is an event type for output: "unknown" when empty.
func typeName(t tlwebhook.EventType) string {
	if t == "" {
		return "unknown"
	}
	return string(t)
}
