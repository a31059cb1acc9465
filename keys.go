package tlwebhook

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"slices"
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
		if err := checkPublicKey(key); err != nil {
			return err
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

// Ed25519 public keys are checked at construction: a key that is not the
// canonical encoding of a point on the curve verifies nothing, and a point
// of small order (the identity and the seven other torsion points) lets
// anyone forge signatures, such as R = identity and S = 0 for the identity
// key. The arithmetic uses math/big: it runs once per key, never per
// delivery.

var (
	// fieldP is the field prime 2^255 - 19.
	fieldP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	// curveD is the curve constant d = -121665/121666 mod p.
	curveD = func() *big.Int {
		d := new(big.Int).ModInverse(big.NewInt(121666), fieldP)
		d.Mul(d, big.NewInt(-121665))
		return d.Mod(d, fieldP)
	}()
)

// checkPublicKey returns an error wrapping [ErrInvalidSecret] unless key is
// the canonical encoding (RFC 8032 section 5.1.3) of a point of large order.
func checkPublicKey(key []byte) error {
	// The encoding: y little-endian in 255 bits, then the sign of x.
	le := bytes.Clone(key)
	sign := le[31] >> 7
	le[31] &= 0x7f
	slices.Reverse(le)
	y := new(big.Int).SetBytes(le)
	if y.Cmp(fieldP) >= 0 {
		return fmt.Errorf("%w: public key is not a canonical point encoding (y is not reduced)", ErrInvalidSecret)
	}
	// x^2 = (y^2 - 1) / (d y^2 + 1)
	y2 := new(big.Int).Mul(y, y)
	num := new(big.Int).Sub(y2, big.NewInt(1))
	den := new(big.Int).Mul(curveD, y2)
	den.Add(den, big.NewInt(1)).Mod(den, fieldP)
	x2 := num.Mul(num, den.ModInverse(den, fieldP))
	x2.Mod(x2, fieldP)
	x := new(big.Int).ModSqrt(x2, fieldP)
	switch {
	case x == nil:
		return fmt.Errorf("%w: public key is not a point of the Ed25519 curve", ErrInvalidSecret)
	case x.Sign() == 0 && sign == 1:
		return fmt.Errorf("%w: public key is not a canonical point encoding (negative zero)", ErrInvalidSecret)
	}
	if uint(x.Bit(0)) != uint(sign) {
		x.Sub(fieldP, x)
	}
	// A point of small order becomes the identity (0, 1) once multiplied
	// by the cofactor 8: three doublings.
	px, py := x, y
	for range 3 {
		px, py = edwardsAdd(px, py, px, py)
	}
	if px.Sign() == 0 && py.Cmp(big.NewInt(1)) == 0 {
		return fmt.Errorf("%w: public key is a point of small order, which accepts forged signatures", ErrInvalidSecret)
	}
	return nil
}

// edwardsAdd adds two points of the curve -x^2 + y^2 = 1 + d x^2 y^2 in
// affine coordinates; the formula is complete on Ed25519.
func edwardsAdd(x1, y1, x2, y2 *big.Int) (*big.Int, *big.Int) {
	mod := func(z *big.Int) *big.Int { return z.Mod(z, fieldP) }
	x1y2 := mod(new(big.Int).Mul(x1, y2))
	y1x2 := mod(new(big.Int).Mul(y1, x2))
	x1x2 := mod(new(big.Int).Mul(x1, x2))
	y1y2 := mod(new(big.Int).Mul(y1, y2))
	t := mod(new(big.Int).Mul(curveD, mod(new(big.Int).Mul(x1x2, y1y2))))
	one := big.NewInt(1)
	dx := mod(new(big.Int).Add(one, t))
	dy := mod(new(big.Int).Sub(one, t))
	x3 := mod(new(big.Int).Mul(mod(new(big.Int).Add(x1y2, y1x2)), new(big.Int).ModInverse(dx, fieldP)))
	y3 := mod(new(big.Int).Mul(mod(new(big.Int).Add(y1y2, x1x2)), new(big.Int).ModInverse(dy, fieldP)))
	return x3, y3
}
