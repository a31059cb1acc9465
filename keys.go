package tlwebhook

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// Keys: whsec_ (or bare base64) HMAC secrets and whpk_ Ed25519 public keys,
// decoded once at construction.

// addKey decodes one configured key and adds it to the verifier.
func (v *Verifier) addKey(s string) error {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, prefixPublicKey):
		key, err := decodeKey(s[len(prefixPublicKey):], "whpk_")
		if err != nil {
			return err
		}
		if len(key) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: public key decodes to %d bytes, want %d", ErrInvalidSecret, len(key), ed25519.PublicKeySize)
		}
		v.edKeys = append(v.edKeys, ed25519.PublicKey(key))
		return nil
	case strings.HasPrefix(s, prefixPrivateKey):
		return fmt.Errorf("%w: a whsk_ key is the sender's private signing key; give the receiver the public key (whpk_)", ErrInvalidSecret)
	}
	key, err := decodeKey(strings.TrimPrefix(s, prefixSecret), "whsec_")
	if err != nil {
		return err
	}
	if len(key) < minKeyBytes {
		return fmt.Errorf("%w: decodes to %d bytes, want at least %d", ErrInvalidSecret, len(key), minKeyBytes)
	}
	v.hmacKeys = append(v.hmacKeys, newMACKey(key))
	return nil
}

func decodeKey(s, prefix string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidSecret)
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64 (expected %s followed by base64)", ErrInvalidSecret, prefix)
	}
	return key, nil
}

func newMACKey(key []byte) *macKey {
	k := &macKey{}
	k.pool.New = func() any {
		return &macState{h: hmac.New(sha256.New, key), prefix: make([]byte, 0, 64)}
	}
	return k
}
