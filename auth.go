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
	want   [sha256.Size]byte // SHA-256 of the expected value
	label  string            // what failed, for logs; never the credential
}

// check compares the header's value with the expected one in constant time.
// Both sides are hashed first, so that neither the time taken nor an early
// exit reveals how many bytes matched or how long the expected value is.
func (a *authCheck) check(h http.Header) bool {
	got := sha256.Sum256([]byte(first(h, a.header)))
	return subtle.ConstantTimeCompare(got[:], a.want[:]) == 1
}

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
		value := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		c.auth = append(c.auth, authCheck{header: "Authorization", want: sha256.Sum256([]byte(value)), label: "basic authentication"})
		return nil
	})
}

// WithHeaderAuth requires the request header name to carry value, as Svix
// sends for an endpoint configured with custom headers (a token that a
// gateway requires, say). It is checked before the body is read, in constant
// time; a request without it gets 401 and an error wrapping
// [ErrUnauthorized], and runs no callback. It supplements the signature,
// never replaces it. Calling it again for another header requires both.
func WithHeaderAuth(name, value string) VerifierOption {
	return verifierOption(func(c *verifierConfig) error {
		canon := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
		if canon == "" || value == "" {
			return optionError("WithHeaderAuth", "empty header name or value")
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
