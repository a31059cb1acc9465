package tlwebhook_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tl "github.com/tlwebhook/tlwebhook"
)

// degenerateKeys are 32-byte public keys that verify nothing or accept
// forgeries, written out from the literature (the eight small-order
// encodings that libsodium blocks, and non-canonical encodings of y),
// independently of the library's arithmetic.
var degenerateKeys = []struct{ name, reason, hex string }{
	{"identity (all zero but the first byte)", "small order", "0100000000000000000000000000000000000000000000000000000000000000"},
	{"all zero: order 4", "small order", "0000000000000000000000000000000000000000000000000000000000000000"},
	{"order 4, negative x", "small order", "0000000000000000000000000000000000000000000000000000000000000080"},
	{"order 2: y = p - 1", "small order", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
	{"order 8", "small order", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"},
	{"order 8, negative x", "small order", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"},
	{"order 8, other y", "small order", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"},
	{"order 8, other y, negative x", "small order", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"},
	{"identity with the sign bit: negative zero", "canonical", "0100000000000000000000000000000000000000000000000000000000000080"},
	{"y = p: not reduced", "canonical", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
	{"y = p + 1: the identity, not reduced", "canonical", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
	{"all ones: y = 2^255 - 1, not reduced", "canonical", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"},
	{"y = 2: not on the curve", "not a point", "0200000000000000000000000000000000000000000000000000000000000000"},
}

// TestDegeneratePublicKeys checks that every degenerate key is refused at
// construction, and that the forgery it would accept (R = identity, S = 0)
// is what makes the identity key dangerous.
func TestDegeneratePublicKeys(t *testing.T) {
	for _, k := range degenerateKeys {
		t.Run(k.name, func(t *testing.T) {
			raw, err := hex.DecodeString(k.hex)
			require.NoError(t, err)
			require.Len(t, raw, ed25519.PublicKeySize)
			key := "whpk_" + base64.StdEncoding.EncodeToString(raw)
			_, err = tl.NewVerifier(key)
			require.ErrorIs(t, err, tl.ErrInvalidSecret)
			assert.Contains(t, err.Error(), k.reason)
			_, err = tl.NewHandler(tlSecret(t), tl.WithSecrets(key))
			assert.ErrorIs(t, err, tl.ErrInvalidSecret, "also among several keys")
		})
	}
	t.Run("the identity accepts a fixed forgery", func(t *testing.T) {
		// Why the check matters: crypto/ed25519 accepts R = identity, S = 0
		// for the identity key, whatever the message.
		identity, _ := hex.DecodeString(degenerateKeys[0].hex)
		forged := append(append([]byte{}, identity...), make([]byte, 32)...)
		assert.True(t, ed25519.Verify(identity, []byte("msg_x.1800000000.{}"), forged))
	})
	t.Run("real keys are accepted", func(t *testing.T) {
		for range 200 {
			pub, priv, err := ed25519.GenerateKey(nil)
			require.NoError(t, err)
			v, err := tl.NewVerifier("whpk_" + base64.StdEncoding.EncodeToString(pub))
			require.NoError(t, err)
			now := time.Now()
			body := []byte(`{"event_type":"x"}`)
			msg := "msg_1." + strconv.FormatInt(now.Unix(), 10) + "." + string(body)
			sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(msg)))
			_, err = v.Verify(body, http.Header{"Svix-Id": {"msg_1"}, "Svix-Timestamp": {strconv.FormatInt(now.Unix(), 10)}, "Svix-Signature": {"v1a," + sig}})
			require.NoError(t, err)
		}
	})
}

func tlSecret(t *testing.T) string {
	t.Helper()
	return "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123"))
}

// TestInboxWithDeduplicatorRefused: an inbox deduplicates on its own, and a
// deduplicator beside it would mark a message complete before the job's
// transaction commits, losing its effects when the commit fails.
func TestInboxWithDeduplicatorRefused(t *testing.T) {
	dd, err := tl.NewMemoryDeduplicator()
	require.NoError(t, err)
	for _, opts := range [][]tl.HandlerOption{
		{tl.WithInbox(nopInbox{}), tl.WithDeduplicator(dd)},
		{tl.WithDeduplicator(dd), tl.WithInbox(nopInbox{})},
	} {
		_, err := tl.NewHandler(tlSecret(t), opts...)
		require.ErrorIs(t, err, tl.ErrInvalidOption)
		assert.Contains(t, err.Error(), "WithInbox")
	}
	_, err = tl.NewHandler(tlSecret(t), tl.WithInbox(nopInbox{}))
	assert.NoError(t, err, "an inbox alone is fine")
}

type nopInbox struct{}

func (nopInbox) Enqueue(context.Context, tl.Delivery, []byte) error { return nil }
