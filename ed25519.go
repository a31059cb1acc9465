package tlwebhook

import (
	"crypto/ed25519"
	"encoding/base64"
	"sync"
	"sync/atomic"
)

// Ed25519 (v1a) signatures: Svix's asymmetric scheme, ed25519 over the same
// id.timestamp.body as v1, base64-encoded. The cheap checks (form, padding,
// canonical scalar) come before any verification, which costs about 50 us.

// wellFormedEdSig reports whether sig has the form of a base64 Ed25519
// signature: 88 characters ending in "==", the only form that decodes to
// exactly 64 bytes. Without the padding, 88 characters decode to 66 bytes.
func wellFormedEdSig(sig string) bool {
	return len(sig) == edSigLen && sig[edSigLen-2:] == "=="
}

// curveOrder is the order L of the Ed25519 base point, little-endian: a
// signature's scalar S must be below it (RFC 8032 section 5.1.7).
var curveOrder = [32]byte{
	0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
}

// canonicalScalar reports whether the little-endian scalar s is below
// [curveOrder]; ed25519.Verify rejects any other, but only after hashing
// the message and decoding the key.
func canonicalScalar(s []byte) bool {
	for i := len(s) - 1; i >= 0; i-- {
		switch {
		case s[i] < curveOrder[i]:
			return true
		case s[i] > curveOrder[i]:
			return false
		}
	}
	return false // equal to L
}

// ed25519Checks counts Ed25519 verifications, for tests.
var ed25519Checks atomic.Int64

// checkEd25519 checks the first maxAsymmetricEntries well-formed v1a entries
// against every public key: at most one Ed25519 verification per key and
// entry. Entries that do not decode to 64 bytes, or whose scalar is not
// canonical, cost no verification.
func (v *Verifier) checkEd25519(sh sigHeaders, payload []byte) bool {
	var sigs [maxAsymmetricEntries][ed25519.SignatureSize]byte
	// Decode into a buffer of the largest size 88 characters can decode
	// to, so that no input makes the decoder write past it.
	var dec [edSigLen / 4 * 3]byte
	n := 0
	rest := sh.signature
	for i := 0; i < sh.entries && rest != "" && n < len(sigs); i++ {
		version, sig, r, ok := nextEntry(rest)
		rest = r
		if !ok || version != "v1a" || !wellFormedEdSig(sig) {
			continue
		}
		m, err := base64.StdEncoding.Decode(dec[:], []byte(sig))
		if err != nil || m != ed25519.SignatureSize || !canonicalScalar(dec[32:64]) {
			continue
		}
		copy(sigs[n][:], dec[:m])
		n++
	}
	if n == 0 {
		return false
	}
	// ed25519.Verify needs the signed content in one slice: assemble it in
	// a pooled buffer, so that a valid delivery allocates nothing.
	bp := edMsgPool.Get().(*[]byte)
	msg := sh.appendPrefix((*bp)[:0])
	msg = append(msg, payload...)
	ok := false
	for _, k := range v.edKeys {
		for i := 0; i < n && !ok; i++ {
			ed25519Checks.Add(1)
			ok = ed25519.Verify(k, msg, sigs[i][:])
		}
		if ok {
			break
		}
	}
	if cap(msg) <= maxPooledMsg {
		*bp = msg
		edMsgPool.Put(bp)
	}
	return ok
}

// edMsgPool holds buffers for the content an Ed25519 signature covers;
// buffers over maxPooledMsg bytes are left to the garbage collector.
var edMsgPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledMsg = 64 << 10
