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
// For an endpoint with asymmetric signatures, [NewKeyPair] returns a
// signing key (whsk_) for [NewSigner] and [NewRequest] and the public key
// (whpk_) for [tlwebhook.NewHandler].
//
// Signatures are computed here with the standard library, following the
// Svix scheme; the package's tests check them against Svix's own library
// (v1) and against OpenSSL (v1a).
package tlwebhooktest

import (
	"bytes"
	"crypto/ed25519"
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

// Prefixes Svix puts before the base64 of its keys: an HMAC secret, an
// Ed25519 signing key (seed || public key) and an Ed25519 public key.
const (
	secretPrefix     = "whsec_"
	signingKeyPrefix = "whsk_"
	publicKeyPrefix  = "whpk_"
)

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

// NewKeyPair returns a fresh random Ed25519 key pair in the forms Svix
// shows for an endpoint with asymmetric signatures: signingKey is "whsk_"
// followed by the base64 of the 32-byte seed and the 32-byte public key,
// for [NewSigner] and [NewRequest]; publicKey is "whpk_" followed by the
// base64 of the public key, for [tlwebhook.NewVerifier] and
// [tlwebhook.NewHandler]. It panics only if the system's random source
// fails.
func NewKeyPair() (signingKey, publicKey string) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic("tlwebhooktest: generating an Ed25519 key: " + err.Error())
	}
	return signingKeyPrefix + base64.StdEncoding.EncodeToString(priv),
		publicKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// NewMessageID returns a fresh random message id of the form Svix uses,
// "msg_" followed by random characters.
func NewMessageID() string {
	return "msg_" + rand.Text()
}

// A Signer signs payloads the way Svix signs Tensorlake's deliveries: with
// an HMAC secret (v1 signatures) or an Ed25519 signing key (v1a). It is safe
// for concurrent use as long as Now is not changed concurrently.
//
// To sign a delivery with several keys, as Svix does while an endpoint's
// key is rotated, join the results of each Signer's [Signer.Sign] with a
// space; v1 and v1a entries may be mixed.
type Signer struct {
	// Now returns the signing time used by [Signer.Header] and
	// [Signer.NewRequest]. Nil means [time.Now]. Set it to a time in the
	// past to make stale deliveries, for example
	//
	//	s.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	Now func() time.Time

	key   []byte             // HMAC secret, for v1
	edKey ed25519.PrivateKey // Ed25519 signing key, for v1a; nil for HMAC
}

// NewSigner returns a [Signer] for secret, given as Tensorlake shows it:
// an HMAC secret ("whsec_" + base64, or the bare base64), which makes v1
// signatures, or an Ed25519 signing key ("whsk_" + base64 of the seed and
// the public key, as from [NewKeyPair]), which makes v1a signatures. It
// returns an error if the key is empty or not valid base64, if a signing
// key is not 64 bytes or its public half does not belong to its seed, and
// for a public key (whpk_), which cannot sign. Unlike
// [tlwebhook.NewVerifier], it accepts short HMAC keys, so that tests can
// sign with any key.
func NewSigner(secret string) (*Signer, error) {
	secret = strings.TrimSpace(secret)
	switch {
	case strings.HasPrefix(secret, signingKeyPrefix):
		return newEd25519Signer(secret[len(signingKeyPrefix):])
	case strings.HasPrefix(secret, publicKeyPrefix):
		return nil, errors.New("tlwebhooktest: a whpk_ public key verifies but cannot sign; sign with the whsk_ signing key")
	}
	s := strings.TrimPrefix(secret, secretPrefix)
	if s == "" {
		return nil, errors.New("tlwebhooktest: empty secret")
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("tlwebhooktest: secret is not base64 (expected whsec_ followed by base64)")
	}
	return &Signer{key: key}, nil
}

func newEd25519Signer(s string) (*Signer, error) {
	if s == "" {
		return nil, errors.New("tlwebhooktest: empty signing key")
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("tlwebhooktest: signing key is not base64 (expected whsk_ followed by base64)")
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("tlwebhooktest: signing key decodes to %d bytes, want %d (seed and public key)", len(key), ed25519.PrivateKeySize)
	}
	priv := ed25519.NewKeyFromSeed(key[:ed25519.SeedSize])
	if !bytes.Equal(priv[ed25519.SeedSize:], key[ed25519.SeedSize:]) {
		return nil, errors.New("tlwebhooktest: signing key's public half does not belong to its seed")
	}
	return &Signer{edKey: priv}, nil
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
// body: "v1," followed by the base64 HMAC-SHA256 of id.timestamp.body, or
// for a signing key "v1a," followed by the base64 Ed25519 signature of
// id.timestamp.body.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	if s.edKey != nil {
		msg := make([]byte, 0, len(id)+22+len(body))
		msg = append(msg, id...)
		msg = append(msg, '.')
		msg = strconv.AppendInt(msg, ts.Unix(), 10)
		msg = append(msg, '.')
		msg = append(msg, body...)
		return "v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(s.edKey, msg))
	}
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
// [Signer.NewRequest] with a signer for secret: an HMAC secret or a signing
// key (see [NewSigner]). It panics if secret is not valid, which suits
// tests that use a key from [NewSecret] or [NewKeyPair].
func NewRequest(secret, target string, body []byte) *http.Request {
	s, err := NewSigner(secret)
	if err != nil {
		panic(fmt.Sprintf("tlwebhooktest.NewRequest: %v", err))
	}
	return s.NewRequest(target, body)
}
