package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

func runSign(_ context.Context, e *env, args []string) int {
	f := newFlags("sign", "[-secret whsec_...|whsk_...] [-id msg_...] [-timestamp SECONDS] [-body FILE] < body", `
Sign reads a body from stdin (or -body) and prints the three Svix headers
that sign it, one per line, ready for curl -H:

  svix-id: ID
  svix-timestamp: SECONDS
  svix-signature: v1,BASE64      (v1a,BASE64 with a whsk_ signing key)

The signature covers the body byte for byte: send exactly the same bytes,
for example with curl --data-binary @FILE (curl -d strips newlines). The
timestamp defaults to now, and a receiver accepts it for 5 minutes.`)
	secretFlag := f.secretFlag(true)
	id := f.String("id", "", "message id (default a fresh msg_... id)")
	ts := f.Int64("timestamp", 0, "signing time in Unix seconds (default now)")
	bodyFile := f.String("body", "-", `file to read the body from ("-" for stdin)`)
	if code, done := f.parse(e, args); done {
		return code
	}
	secret, code, ok := f.signingKey(e, *secretFlag)
	if !ok {
		return code
	}
	body, err := readInput(e, *bodyFile)
	if err != nil {
		return f.fail(e, "%v", err)
	}
	if *id == "" {
		*id = tlwebhooktest.NewMessageID()
	}
	at := time.Now()
	if *ts != 0 {
		at = time.Unix(*ts, 0)
	}
	h := signer(secret).HeaderFor(*id, at, body)
	for _, name := range []string{tlwebhook.HeaderSvixID, tlwebhook.HeaderSvixTimestamp, tlwebhook.HeaderSvixSignature} {
		fmt.Fprintf(e.stdout, "%s: %s\n", name, h.Get(name))
	}
	fmt.Fprintf(e.stderr, "signed %s bytes; send them unchanged (curl --data-binary @FILE)\n", strconv.Itoa(len(body)))
	return exitOK
}
