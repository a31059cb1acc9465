// Package tlwebhooktest provides utilities for testing programs that receive
// Tensorlake webhooks with package tlwebhook, in the manner of
// [net/http/httptest]: fresh secrets, Svix signatures, signed requests and
// sample payloads for every event type, all without a Tensorlake account or
// network access.
//
// A test of a user's handler is five lines:
//
//	secret := tlwebhooktest.NewSecret()
//	h, _ := tlwebhook.NewHandler(secret) // then register callbacks
//	req := tlwebhooktest.NewRequest(secret, "/webhooks/tensorlake", tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted))
//	rec := httptest.NewRecorder()
//	h.ServeHTTP(rec, req) // rec.Code is 204 when the callback returned nil
//
// Signatures are computed here with the standard library, following the
// Svix scheme; the package's tests check them against Svix's own library.
package tlwebhooktest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/tlwebhook/tlwebhook"
)

// secretPrefix is the prefix Svix puts before the base64 key of a secret.
const secretPrefix = "whsec_"

// NewSecret returns a fresh random endpoint secret in the form Tensorlake
// shows: "whsec_" followed by the standard base64 encoding of 32 random
// bytes. It panics only if the system's random source fails.
func NewSecret() string {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic("tlwebhooktest: reading random bytes: " + err.Error())
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(key)
}

// NewMessageID returns a fresh random message id of the form Svix uses,
// "msg_" followed by random characters.
func NewMessageID() string {
	return "msg_" + rand.Text()
}

// A Signer signs payloads the way Svix signs Tensorlake's deliveries. It is
// safe for concurrent use as long as Now is not changed concurrently.
//
// To sign a delivery with several secrets, as Svix does while an endpoint's
// secret is rotated, join the results of each Signer's [Signer.Sign] with a
// space.
type Signer struct {
	// Now returns the signing time used by [Signer.Header] and
	// [Signer.NewRequest]. Nil means [time.Now]. Set it to a time in the
	// past to make stale deliveries, for example
	//
	//	s.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	Now func() time.Time

	key []byte
}

// NewSigner returns a [Signer] for secret, given as Tensorlake shows it
// ("whsec_" + base64) or without the prefix. It returns an error if the
// secret is not valid base64 or is empty. Unlike [tlwebhook.NewVerifier],
// it accepts short keys, so that tests can sign with any key.
func NewSigner(secret string) (*Signer, error) {
	s := strings.TrimPrefix(strings.TrimSpace(secret), secretPrefix)
	if s == "" {
		return nil, errors.New("tlwebhooktest: empty secret")
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("tlwebhooktest: secret is not base64 (expected whsec_ followed by base64)")
	}
	return &Signer{key: key}, nil
}

// String describes the signer without revealing its key.
func (s *Signer) String() string { return "tlwebhooktest.Signer{}" }

// GoString is like String, so that %#v does not reveal the key either.
func (s *Signer) GoString() string { return s.String() }

func (s *Signer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Sign returns the value of the svix-signature header for a delivery with
// message id id, signed at ts (truncated to whole seconds), and the raw body
// body: "v1," followed by the base64 HMAC-SHA256 of id.timestamp.body.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// HeaderFor returns the three signature headers (svix-id, svix-timestamp,
// svix-signature) of a delivery with message id id, signed at ts, and body
// body.
func (s *Signer) HeaderFor(id string, ts time.Time, body []byte) http.Header {
	h := make(http.Header, 3)
	h.Set(tlwebhook.HeaderSvixID, id)
	h.Set(tlwebhook.HeaderSvixTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(tlwebhook.HeaderSvixSignature, s.Sign(id, ts, body))
	return h
}

// Header returns the signature headers of a new delivery of body: a fresh
// message id ([NewMessageID]) signed at the current time ([Signer.Now]).
func (s *Signer) Header(body []byte) http.Header {
	return s.HeaderFor(NewMessageID(), s.now(), body)
}

// NewRequest returns a new incoming server request, as
// [httptest.NewRequest] does, suitable for passing to an [http.Handler]'s
// ServeHTTP: a POST of body to target with Content-Type application/json and
// the signature headers of [Signer.Header]. target is a path or an absolute
// URL, as for httptest.NewRequest, which panics on an invalid target.
func (s *Signer) NewRequest(target string, body []byte) *http.Request {
	req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for name, values := range s.Header(body) {
		req.Header[name] = values
	}
	return req
}

// NewRequest returns a signed incoming server request for body, like
// [Signer.NewRequest] with a signer for secret. It panics if secret is not
// valid, which suits tests that use a secret from [NewSecret].
func NewRequest(secret, target string, body []byte) *http.Request {
	s, err := NewSigner(secret)
	if err != nil {
		panic(fmt.Sprintf("tlwebhooktest.NewRequest: %v", err))
	}
	return s.NewRequest(target, body)
}
