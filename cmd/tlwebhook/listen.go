package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tlwebhook/tlwebhook"
)

func runListen(ctx context.Context, e *env, args []string) int {
	f := newFlags("listen", "[-addr host:port] [-path /path] [-secret whsec_...|whpk_...] [-save DIR]", `
Listen runs a webhook receiver (a tlwebhook.Handler with every callback
registered) until interrupted (SIGINT or SIGTERM), and prints:

  listening on http://ADDR/PATH
  saved file=FILE [delivery=ID]                          (each request, with -save)
  event TYPE delivery=ID callback=CALLBACK key=value...   (each verified event)
  drift delivery=ID type=TYPE pointer=P kind=K breaking=B (each way its payload
                                                          departs from the event
                                                          structs; see "check")
  rejected status=CODE [delivery=ID] reason=...          (each rejection)
  not-found method=METHOD path=PATH status=404           (requests to other paths)
  stopped

Point "tlwebhook send" at it, or a tunnel to test real deliveries. The key
is the endpoint's HMAC secret (whsec_) or, for an endpoint with asymmetric
signatures, its public key (whpk_).

With -save DIR, every request that arrives (to any path, verified or not)
is also written to its own file in DIR, before the receiver sees it, so
that "tlwebhook verify -request FILE" can explain a rejection later. The
file is the request as received, in HTTP/1.1 form:

  POST /webhooks/tensorlake HTTP/1.1      request line: method, target as sent
  Host: HOST
  Name: value                             every header, one line per value;
  ...                                     names in Go's canonical form, sorted
  Content-Length: N                       the declared length (or, for a
                                          chunked body, the decoded length)
                                          blank line
  BODY                                    the body bytes, unchanged

Lines end in CRLF; nothing follows the body. Files are named
NNNN-YYYYMMDDTHHMMSSZ-ID.http (NNNN counts requests, ID is the delivery's
svix-id or webhook-id, or "no-id") and are readable by their owner only:
they hold payloads, signatures and any credentials a request carries.
Bodies over 16 MiB are cut there.`)
	addr := f.String("addr", "127.0.0.1:8080", "address to listen on; port 0 picks a free port")
	path := f.String("path", defaultPath, "path to receive webhooks on")
	secretFlag := f.secretFlag(false)
	saveDir := f.String("save", "", "directory to write each request to, one file per request (created if missing)")
	tolerance := f.Duration("tolerance", tlwebhook.DefaultTolerance, "accepted age (and clock skew) of a delivery's timestamp")
	if code, done := f.parse(e, args); done {
		return code
	}
	if !strings.HasPrefix(*path, "/") {
		return f.usageError(e, "-path %q must start with /", *path)
	}
	if *tolerance <= 0 {
		return f.usageError(e, "-tolerance must be positive")
	}
	secret, code, ok := f.verifyingKey(e, *secretFlag)
	if !ok {
		return code
	}
	if *saveDir != "" {
		if err := os.MkdirAll(*saveDir, 0o700); err != nil {
			return f.fail(e, "-save: %v", err)
		}
	}

	out := &lineWriter{w: e.stdout}
	// Rejections and drift are printed from the Handler's observations; the
	// library's own log records go to stderr, errors only (each is printed
	// once).
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	h, err := tlwebhook.NewHandler(secret, tlwebhook.WithLogger(logger), tlwebhook.WithTolerance(*tolerance),
		tlwebhook.WithObserver(listenPrinter{out}))
	if err != nil {
		return f.usageError(e, "%v", err)
	}
	onEvery(h, func(ctx context.Context, callback string, ev tlwebhook.Event) error {
		d, _ := tlwebhook.DeliveryFromContext(ctx)
		fields := describe(ev)
		typ := string(ev.Type())
		if typ == "" {
			typ = "unknown"
		}
		out.println(append([]string{"event", quoteIfNeeded(typ), kv("delivery", d.ID), kv("callback", callback)}, fields...)...)
		return nil
	})

	mux := http.NewServeMux()
	mux.Handle(*path, h)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		out.println("not-found", kv("method", r.Method), kv("path", r.URL.Path), "status=404")
		http.NotFound(w, r)
	})
	var root http.Handler = mux
	if *saveDir != "" {
		root = &requestSaver{dir: *saveDir, next: mux, out: out}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return f.fail(e, "%v", err)
	}
	srv := &http.Server{
		Handler:           root,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	out.println("listening on http://" + ln.Addr().String() + *path)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return f.fail(e, "%v", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return f.fail(e, "shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return f.fail(e, "%v", err)
	}
	out.println("stopped")
	return exitOK
}

// maxSavedBody bounds the body bytes listen -save keeps of one request.
const maxSavedBody = 16 << 20

// requestSaver writes every request to its own file in dir, in the format
// "verify -request" reads, then passes it on with its body intact.
type requestSaver struct {
	dir  string
	next http.Handler
	out  *lineWriter
	seq  atomic.Int64
}

func (s *requestSaver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSavedBody))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
	id := messageID(r.Header)
	name := fmt.Sprintf("%04d-%s-%s.http", s.seq.Add(1), time.Now().UTC().Format("20060102T150405Z"), fileSafe(id))
	path := filepath.Join(s.dir, name)
	if werr := os.WriteFile(path, renderRequest(r, body), 0o600); werr != nil {
		s.out.println("save-failed", kv("error", werr.Error()))
	} else {
		fields := []string{"saved", kv("file", path)}
		if id != "" {
			fields = append(fields, kv("delivery", clip(id)))
		}
		if err != nil {
			fields = append(fields, kv("note", "reading the body failed after "+strconv.Itoa(len(body))+" bytes: "+err.Error()))
		}
		s.out.println(fields...)
	}
	s.next.ServeHTTP(w, r)
}

// renderRequest renders r with body as an HTTP/1.1 request: request line,
// Host, the headers sorted by name, Content-Length, a blank line, the body.
func renderRequest(r *http.Request, body []byte) []byte {
	var b bytes.Buffer
	target := r.RequestURI
	if target == "" {
		target = r.URL.RequestURI()
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", r.Method, target)
	fmt.Fprintf(&b, "Host: %s\r\n", r.Host)
	for _, name := range slices.Sorted(maps.Keys(r.Header)) {
		switch name {
		case "Host", "Content-Length", "Transfer-Encoding":
			continue // written from the parsed request below
		}
		for _, v := range r.Header[name] {
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	n := r.ContentLength
	if n < 0 || len(r.TransferEncoding) > 0 {
		n = int64(len(body)) // chunked: the decoded length
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", n)
	b.Write(body)
	return b.Bytes()
}

// fileSafe turns a delivery id into a file name part: letters, digits, '_'
// and '-' only, at most 64 bytes; "no-id" when empty.
func fileSafe(id string) string {
	var b strings.Builder
	for _, c := range []byte(id) {
		if b.Len() == 64 {
			break
		}
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "no-id"
	}
	return b.String()
}
