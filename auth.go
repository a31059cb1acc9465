package tlwebhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
)

// authCheck is one additional authentication requirement: the value of a
// request header must equal an expected value.
type authCheck struct {
	header string            // canonical header name
	want   [sha256.Size]byte // SHA-256 of the expected value; the value itself is not kept
	label  string            // what failed, for logs; never the credential
	basic  bool              // the value is "Basic " + credentials; the scheme is case-insensitive
}

// check compares the header's value with the expected one in constant time.
// Both sides are hashed first, so that neither the time taken nor an early
// exit reveals how many bytes matched or how long the expected value is:
// subtle.ConstantTimeCompare then compares two 32-byte digests. Only the
// hash of the received value costs time in proportion to its length, which
// the sender knows anyway.
func (a *authCheck) check(h http.Header) bool {
	got := first(h, a.header)
	if a.basic && len(got) > len(basicScheme) && strings.EqualFold(got[:len(basicScheme)], basicScheme) {
		// RFC 9110 section 11.1: the scheme name is case-insensitive.
		got = basicScheme + got[len(basicScheme):]
	}
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], a.want[:]) == 1
}

const basicScheme = "Basic "

// WithBasicAuth requires HTTP Basic authentication with the given user and
// password, as Svix sends when the endpoint URL carries credentials
// (https://user:password@host/path). It is checked before the body is read,
// in constant time; a request without the right credentials gets 401 and an
// error wrapping [ErrUnauthorized], and runs no callback. It supplements the
// signature, never replaces it. The user must not contain a colon.
func WithBasicAuth(user, password string) VerifierOption {
	return verifierOption(func(c *verifierConfig) error {
		if user == "" && password == "" {
			return optionError("WithBasicAuth", "empty user and password")
		}
		if strings.Contains(user, ":") {
			return optionError("WithBasicAuth", "the user contains a colon")
		}
		value := basicScheme + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		c.auth = append(c.auth, authCheck{header: "Authorization", want: sha256.Sum256([]byte(value)), label: "basic authentication", basic: true})
		return nil
	})
}

// WithHeaderAuth requires the request header name to carry value, as Svix
// sends for an endpoint configured with custom headers (a token that a
// gateway requires, say). It is checked before the body is read, in constant
// time; a request without it gets 401 and an error wrapping
// [ErrUnauthorized], and runs no callback. It supplements the signature,
// never replaces it. Calling it again for another header requires both.
// A name that is not a valid header name, and a value that no request can
// carry (surrounding spaces or tabs, which HTTP servers strip, or control
// characters), are errors wrapping [ErrInvalidOption].
func WithHeaderAuth(name, value string) VerifierOption {
	return verifierOption(func(c *verifierConfig) error {
		canon := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
		if canon == "" || value == "" {
			return optionError("WithHeaderAuth", "empty header name or value")
		}
		if !validHeaderName(canon) {
			return optionError("WithHeaderAuth", "%q is not a valid header name", truncate(canon, 64))
		}
		if !receivableValue(value) {
			// Never quote the value: it is a credential.
			return optionError("WithHeaderAuth", "the value for %s has surrounding white space or control characters, which no request can carry", canon)
		}
		switch strings.ToLower(canon) {
		case HeaderSvixID, HeaderSvixTimestamp, HeaderSvixSignature,
			HeaderWebhookID, HeaderWebhookTimestamp, HeaderWebhookSignature:
			return optionError("WithHeaderAuth", "%s is a signature header", canon)
		}
		c.auth = append(c.auth, authCheck{header: canon, want: sha256.Sum256([]byte(value)), label: "header " + canon})
		return nil
	})
}

// validHeaderName reports whether name is an HTTP token (RFC 9110 section
// 5.1), the only header names a request can carry.
func validHeaderName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 0x7f || c <= ' ' || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return name != ""
}

// receivableValue reports whether a request can carry value as a header
// value once the server has stripped the optional white space around it.
func receivableValue(value string) bool {
	if value[0] == ' ' || value[0] == '\t' || value[len(value)-1] == ' ' || value[len(value)-1] == '\t' {
		return false
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// checkAuth applies every additional authentication requirement, all of
// them whatever the outcome of the first, so that the time taken does not
// tell which one failed.
func (c *verifierConfig) checkAuth(h http.Header) error {
	ok := 1
	failed := ""
	for i := range c.auth {
		if !c.auth[i].check(h) {
			ok = 0
			if failed == "" {
				failed = c.auth[i].label
			}
		}
	}
	if ok == 0 {
		return fmt.Errorf("%w: %s failed", ErrUnauthorized, failed)
	}
	return nil
}
