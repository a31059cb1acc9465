// Command tlwebhook tries, tests and debugs Tensorlake webhook receivers
// built with package tlwebhook, locally and without a Tensorlake account.
//
// Usage:
//
//	tlwebhook <command> [flags]
//
// The commands are:
//
//	demo     run a receiver and send it one signed delivery of every event type
//	listen   run a receiver that prints every event and every rejection
//	send     sign and POST samples, payload files or captured deliveries to a receiver
//	sign     print the Svix headers for a body read from stdin
//	verify   check a captured delivery and explain why it does not verify
//	secret   print a fresh random endpoint secret
//
// Run "tlwebhook <command> -h" for a command's flags. Commands that need a
// key take it from -secret or from the TENSORLAKE_WEBHOOK_SECRET
// environment variable: an HMAC secret (whsec_...) for an endpoint with
// symmetric signatures (v1), or for one with asymmetric signatures (v1a)
// the signing key (whsk_..., for sign and send) or the public key
// (whpk_..., for verify and listen).
//
// Exit status: 0 on success, 1 when a command fails (for example a delivery
// that does not verify, or a non-2xx answer), 2 on a usage error.
//
// Output is one line per fact, each starting with a fixed word and followed
// by key=value fields, so that it can be read by people and by grep.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// envSecret is the environment variable that holds the endpoint secret.
const envSecret = "TENSORLAKE_WEBHOOK_SECRET"

// defaultPath is the route the receivers listen on and send posts to.
const defaultPath = "/webhooks/tensorlake"

// env is what a command may use of its process.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

type command struct {
	name     string
	synopsis string
	run      func(ctx context.Context, e *env, args []string) int
}

var commands = []command{
	{"demo", "run a receiver and send it one signed delivery of every event type", runDemo},
	{"listen", "run a receiver that prints every event and every rejection", runListen},
	{"send", "sign and POST samples, payload files or captured deliveries to a receiver", runSend},
	{"sign", "print the Svix headers for a body read from stdin", runSign},
	{"verify", "check a captured delivery and explain why it does not verify", runVerify},
	{"secret", "print a fresh random endpoint secret (or key pair)", runSecret},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run runs the command line args (without the program name). SIGINT and
// SIGTERM cancel the command's context.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runContext(ctx, args, &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv})
}

func runContext(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 {
			return runContext(ctx, []string{args[1], "-h"}, e)
		}
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "tlwebhook: unknown command %q\n", name)
	usage(e.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tlwebhook <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.synopsis)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "tlwebhook <command> -h" for a command's flags.`)
	fmt.Fprintf(w, "Commands that need a key read -secret or $%s: whsec_... (HMAC), or\n", envSecret)
	fmt.Fprintln(w, "whsk_... (to sign and send) and whpk_... (to verify and listen) for Ed25519.")
}

// cmdFlags is a command's flag set with its help text.
type cmdFlags struct {
	*flag.FlagSet
	name, args, help string
}

func newFlags(name, args, help string) *cmdFlags {
	fs := flag.NewFlagSet("tlwebhook "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &cmdFlags{FlagSet: fs, name: name, args: args, help: help}
}

func (f *cmdFlags) printUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: tlwebhook %s %s\n\n%s\n", f.name, f.args, strings.TrimSpace(f.help))
	n := 0
	f.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		f.SetOutput(w)
		f.PrintDefaults()
		f.SetOutput(io.Discard)
	}
}

// isSet reports whether the flag name was given on the command line.
func (f *cmdFlags) isSet(name string) bool {
	set := false
	f.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	return set
}

// parse parses args. When done is true the command must return code:
// 0 after -h, 2 after a usage error. Commands take no positional arguments.
func (f *cmdFlags) parse(e *env, args []string) (code int, done bool) {
	err := f.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		f.printUsage(e.stdout)
		return exitOK, true
	case err != nil:
		return f.usageError(e, "%v", err), true
	case f.NArg() > 0:
		return f.usageError(e, "unexpected argument %q", f.Arg(0)), true
	}
	return exitOK, false
}

// usageError reports a usage error and returns exitUsage.
func (f *cmdFlags) usageError(e *env, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "tlwebhook %s: %s\n", f.name, fmt.Sprintf(format, args...))
	fmt.Fprintf(e.stderr, "run 'tlwebhook %s -h' for usage\n", f.name)
	return exitUsage
}

// fail reports a failure and returns exitFailure.
func (f *cmdFlags) fail(e *env, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "tlwebhook %s: %s\n", f.name, fmt.Sprintf(format, args...))
	return exitFailure
}

// secretFlag registers -secret for a command that signs (signing true:
// whsec_ or whsk_) or verifies (whsec_ or whpk_).
func (f *cmdFlags) secretFlag(signing bool) *string {
	kinds := "whsec_... (HMAC) or whpk_... (Ed25519 public key)"
	if signing {
		kinds = "whsec_... (HMAC) or whsk_... (Ed25519 signing key)"
	}
	return f.String("secret", "", "endpoint key: "+kinds+" (default $"+envSecret+")")
}

// keyFrom returns the key given by -secret or the environment. A missing
// key is a usage error.
func (f *cmdFlags) keyFrom(e *env, flagValue string) (string, int, bool) {
	s := strings.TrimSpace(flagValue)
	if s == "" {
		s = strings.TrimSpace(e.getenv(envSecret))
	}
	if s == "" {
		return "", f.usageError(e, "no secret: pass -secret or set %s", envSecret), false
	}
	return s, exitOK, true
}

// signingKey returns the key to sign with: an HMAC secret (whsec_) or an
// Ed25519 signing key (whsk_), checked by [tlwebhooktest.NewSigner]. A
// missing or invalid key, or a public key, is a usage error.
func (f *cmdFlags) signingKey(e *env, flagValue string) (string, int, bool) {
	s, code, ok := f.keyFrom(e, flagValue)
	if !ok {
		return "", code, false
	}
	if _, err := tlwebhooktest.NewSigner(s); err != nil {
		return "", f.usageError(e, "%s", strings.TrimPrefix(err.Error(), "tlwebhooktest: ")), false
	}
	return s, exitOK, true
}

// verifyingKey returns the key to verify with: an HMAC secret or an
// Ed25519 public key, checked by [tlwebhook.NewVerifier]. A missing or
// invalid key, or a signing key, is a usage error.
func (f *cmdFlags) verifyingKey(e *env, flagValue string) (string, int, bool) {
	s, code, ok := f.keyFrom(e, flagValue)
	if !ok {
		return "", code, false
	}
	if _, err := tlwebhook.NewVerifier(s); err != nil {
		return "", f.usageError(e, "%v", err), false
	}
	return s, exitOK, true
}

// signer returns a signer for a key already checked by signingKey.
func signer(secret string) *tlwebhooktest.Signer {
	s, err := tlwebhooktest.NewSigner(secret)
	if err != nil {
		panic(err) // unreachable: signingKey checked the key
	}
	return s
}

func runSecret(_ context.Context, e *env, args []string) int {
	f := newFlags("secret", "[-asymmetric]", `
Secret prints a fresh random endpoint secret: whsec_ followed by the base64
of 32 random bytes. Use it with listen and send, or in tests.

With -asymmetric it prints a fresh Ed25519 key pair instead, as Svix shows
it for an endpoint with asymmetric signatures (v1a), one key per line:

  whsk_...   the signing key (seed and public key): for send and sign
  whpk_...   the public key: for listen, verify and tlwebhook.NewHandler`)
	asymmetric := f.Bool("asymmetric", false, "print an Ed25519 signing key and its public key")
	if code, done := f.parse(e, args); done {
		return code
	}
	if *asymmetric {
		sk, pk := tlwebhooktest.NewKeyPair()
		fmt.Fprintln(e.stdout, sk)
		fmt.Fprintln(e.stdout, pk)
		fmt.Fprintln(e.stderr, "line 1: signing key (send, sign); line 2: public key (listen, verify, tlwebhook.NewHandler)")
		return exitOK
	}
	fmt.Fprintln(e.stdout, tlwebhooktest.NewSecret())
	return exitOK
}

// parseEventType accepts a full event type or a unique dot-separated suffix
// of one, such as "job.completed" or "sandbox.failed": the rule of
// [tlwebhooktest.SampleType], which the samples are looked up by.
func parseEventType(s string) (tlwebhook.EventType, error) {
	t, err := tlwebhooktest.SampleType(s)
	if err != nil {
		return "", fmt.Errorf("%w (or all)", err)
	}
	return t, nil
}

// kv formats one key=value field, quoting the value when it is empty or
// contains spaces, quotes, '=' or non-printable characters.
func kv(key, value string) string {
	return key + "=" + quoteIfNeeded(value)
}

func quoteIfNeeded(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r == '"' || r == '=' || r == '\\' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
