package tlwebhook

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// The signature headers: their names, and reading them from a request
// (which set, the timestamp, the entries of the signature list, the
// content a signature covers).

// Header names of the signature scheme. Svix sends the svix-* names;
// white-labelled senders use the Standard Webhooks webhook-* names with the
// same meaning. Both sets are accepted.
const (
	HeaderSvixID           = "svix-id"
	HeaderSvixTimestamp    = "svix-timestamp"
	HeaderSvixSignature    = "svix-signature"
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// HeaderWebhookDelivery is the response header of Svix's delivery control.
// The [Handler] sets it to "abort-message" when a callback returns a
// [Permanent] error, so that Svix stops retrying that message.
const HeaderWebhookDelivery = "webhook-delivery"

// sigHeaders are the three signature headers of one delivery.
type sigHeaders struct {
	id        string
	timestamp int64
	tsDigits  string // the timestamp header when it is in canonical form, else ""
	signature string // from the first entry that may match
	entries   int    // how many entries of signature may be examined
}

// Canonical forms of the header names, for direct map access.
const (
	canonSvixID           = "Svix-Id"
	canonSvixTimestamp    = "Svix-Timestamp"
	canonSvixSignature    = "Svix-Signature"
	canonWebhookID        = "Webhook-Id"
	canonWebhookTimestamp = "Webhook-Timestamp"
	canonWebhookSignature = "Webhook-Signature"
)

func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// parseHeaders reads the signature headers. Like Svix's libraries it uses
// the svix-* set when all three are present and non-empty, else the
// webhook-* set.
func parseHeaders(h http.Header) (sigHeaders, error) {
	id, ts, sig := first(h, canonSvixID), first(h, canonSvixTimestamp), first(h, canonSvixSignature)
	if id == "" || ts == "" || sig == "" {
		id, ts, sig = first(h, canonWebhookID), first(h, canonWebhookTimestamp), first(h, canonWebhookSignature)
		if id == "" || ts == "" || sig == "" {
			return sigHeaders{}, ErrMissingHeaders
		}
	}
	sh := sigHeaders{id: id, signature: sig}
	t, digits, err := parseTimestamp(ts)
	if err != nil {
		return sigHeaders{id: id}, err
	}
	sh.timestamp, sh.tsDigits = t, digits
	return sh, nil
}

// parseTimestamp parses a timestamp header: decimal Unix seconds. digits is
// ts itself when it is in canonical form, so that the signed content can
// copy it; else "".
func parseTimestamp(ts string) (t int64, digits string, err error) {
	if t, ok := parseCanonicalInt(ts); ok {
		return t, ts, nil
	}
	t, err = strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("%w: timestamp is not a decimal integer of Unix seconds", ErrInvalidHeaders)
	}
	return t, "", nil
}

// parseCanonicalInt parses s when it is exactly how strconv.FormatInt
// writes a non-negative number (no sign, no leading zero), so that the
// signed content can copy its digits; anything else is left to
// strconv.ParseInt.
func parseCanonicalInt(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		n = n*10 + int64(c)
	}
	return n, true
}

// nextEntry splits the signature header the way Svix's libraries do: entries
// separated by single spaces, each "version,signature[,ignored...]".
func nextEntry(s string) (version, sig, rest string, ok bool) {
	entry := s
	if i := strings.IndexByte(s, ' '); i >= 0 {
		entry, rest = s[:i], s[i+1:]
	}
	i := strings.IndexByte(entry, ',')
	if i < 0 {
		return "", "", rest, false
	}
	version, sig = entry[:i], entry[i+1:]
	if j := strings.IndexByte(sig, ','); j >= 0 {
		sig = sig[:j]
	}
	return version, sig, rest, true
}

// signedContent appends id.timestamp. to dst.
func (sh *sigHeaders) appendPrefix(dst []byte) []byte {
	dst = append(dst, sh.id...)
	dst = append(dst, '.')
	if sh.tsDigits != "" {
		dst = append(dst, sh.tsDigits...)
	} else {
		dst = strconv.AppendInt(dst, sh.timestamp, 10)
	}
	return append(dst, '.')
}
