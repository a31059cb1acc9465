package tlwebhooktest_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// Asymmetric (Ed25519, v1a) signing.

func TestNewKeyPair(t *testing.T) {
	seen := make(map[string]bool)
	for range 20 {
		sk, pk := tlwebhooktest.NewKeyPair()
		require.True(t, strings.HasPrefix(sk, "whsk_"), sk)
		require.True(t, strings.HasPrefix(pk, "whpk_"), pk)
		priv, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sk, "whsk_"))
		require.NoError(t, err)
		require.Len(t, priv, ed25519.PrivateKeySize, "seed || public key, as Svix shows it")
		pub, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(pk, "whpk_"))
		require.NoError(t, err)
		require.Len(t, pub, ed25519.PublicKeySize)
		assert.Equal(t, pub, priv[32:], "the signing key ends with the public key")
		assert.Equal(t, ed25519.PublicKey(pub), ed25519.NewKeyFromSeed(priv[:32]).Public(), "the public key belongs to the seed")
		require.False(t, seen[sk], "key repeated")
		seen[sk] = true

		_, err = tlwebhook.NewVerifier(pk)
		require.NoError(t, err, "tlwebhook accepts the public key")
		_, err = tlwebhook.NewVerifier(sk)
		require.ErrorIs(t, err, tlwebhook.ErrInvalidSecret, "tlwebhook refuses the signing key")
		_, err = tlwebhooktest.NewSigner(sk)
		require.NoError(t, err)
	}
}

func TestNewSignerEd25519Keys(t *testing.T) {
	sk, pk := tlwebhooktest.NewKeyPair()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sk, "whsk_"))
	require.NoError(t, err)
	_, otherPK := tlwebhooktest.NewKeyPair()
	otherPub, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(otherPK, "whpk_"))
	require.NoError(t, err)
	mismatched := append(append([]byte(nil), raw[:32]...), otherPub...)
	tests := []struct {
		name, key, wantErr string
	}{
		{"signing key", sk, ""},
		{"signing key with surrounding space", " " + sk + "\n", ""},
		{"public key", pk, "a whpk_ public key verifies but cannot sign; sign with the whsk_ signing key"},
		{"empty signing key", "whsk_", "empty signing key"},
		{"not base64", "whsk_" + strings.Repeat("*", 88), "not base64"},
		{"seed only", "whsk_" + base64.StdEncoding.EncodeToString(raw[:32]), "decodes to 32 bytes, want 64"},
		{"public half of another key", "whsk_" + base64.StdEncoding.EncodeToString(mismatched), "public half does not belong to its seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tlwebhooktest.NewSigner(tt.key)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				if k := strings.TrimSpace(tt.key)[5:]; len(k) > 8 {
					assert.NotContains(t, err.Error(), k[:8], "error quotes the key")
				}
				return
			}
			require.NoError(t, err)
			sig := s.Sign("msg_1", time.Unix(1700000000, 0), []byte("{}"))
			assert.True(t, strings.HasPrefix(sig, "v1a,"), sig)
			assert.Len(t, sig, len("v1a,")+88)
			assert.NotContains(t, fmt.Sprintf("%v %+v %#v", s, s, s), strings.TrimPrefix(sk, "whsk_")[:8], "formatting reveals the key")
		})
	}
	assert.PanicsWithValue(t,
		"tlwebhooktest.NewRequest: tlwebhooktest: a whpk_ public key verifies but cannot sign; sign with the whsk_ signing key",
		func() { tlwebhooktest.NewRequest(pk, "/", nil) })
}

// TestSignEd25519MatchesOpenSSL checks v1a signatures against the vectors
// OpenSSL made (../testdata/ed25519/vectors.sh): Ed25519 is deterministic,
// so the signer must produce the same bytes.
func TestSignEd25519MatchesOpenSSL(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "ed25519", "vectors.json"))
	require.NoError(t, err)
	var file struct {
		Vectors []struct {
			Name       string `json:"name"`
			SigningKey string `json:"signing_key"`
			PublicKey  string `json:"public_key"`
			ID         string `json:"id"`
			Timestamp  int64  `json:"timestamp"`
			BodyBase64 string `json:"body_base64"`
			Signature  string `json:"signature"`
		}
	}
	require.NoError(t, json.Unmarshal(data, &file))
	require.NotEmpty(t, file.Vectors)
	for _, vec := range file.Vectors {
		t.Run(vec.Name, func(t *testing.T) {
			body, err := base64.StdEncoding.DecodeString(vec.BodyBase64)
			require.NoError(t, err)
			s, err := tlwebhooktest.NewSigner(vec.SigningKey)
			require.NoError(t, err)
			at := time.Unix(vec.Timestamp, 0)
			assert.Equal(t, vec.Signature, s.Sign(vec.ID, at, body))
			h := s.HeaderFor(vec.ID, at, body)
			v, err := tlwebhook.NewVerifier(vec.PublicKey, tlwebhook.WithClock(func() time.Time { return at }))
			require.NoError(t, err)
			_, err = v.Verify(body, h)
			assert.NoError(t, err)
		})
	}
}

// TestSignEd25519VerifiedByOpenSSL has OpenSSL verify fresh v1a signatures
// when it is installed (skipped with a message otherwise; CI=true requires
// it).
func TestSignEd25519VerifiedByOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is not installed (CI=true requires it)")
		}
		t.Skip("openssl is not installed: skipping the check against an independent Ed25519 implementation")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := range 5 {
		sk, pk := tlwebhooktest.NewKeyPair()
		pub, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(pk, "whpk_"))
		require.NoError(t, err)
		// SubjectPublicKeyInfo of an Ed25519 key: a fixed 12-byte prefix.
		spki := append([]byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00}, pub...)
		body := make([]byte, rng.IntN(2048))
		for j := range body {
			body[j] = byte(rng.Uint32())
		}
		s, err := tlwebhooktest.NewSigner(sk)
		require.NoError(t, err)
		h := s.Header(body)
		sig, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h.Get("svix-signature"), "v1a,"))
		require.NoError(t, err)
		msg := []byte(h.Get("svix-id") + "." + h.Get("svix-timestamp") + "." + string(body))

		files := map[string][]byte{"pub.der": spki, "msg": msg, "sig": sig}
		for name, b := range files {
			require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprint(i, name)), b, 0o600))
		}
		verify := func(msgFile string) error {
			return exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-keyform", "DER",
				"-inkey", filepath.Join(dir, fmt.Sprint(i, "pub.der")), "-rawin",
				"-in", msgFile, "-sigfile", filepath.Join(dir, fmt.Sprint(i, "sig"))).Run()
		}
		require.NoError(t, verify(filepath.Join(dir, fmt.Sprint(i, "msg"))), "openssl rejects signature %d", i)
		tampered := filepath.Join(dir, fmt.Sprint(i, "tampered"))
		require.NoError(t, os.WriteFile(tampered, append(msg, '!'), 0o600))
		require.Error(t, verify(tampered), "openssl accepts a changed message")
	}
}

// TestEd25519Requests sends requests signed with a signing key through
// Handlers configured with its public key, another key, and both kinds of
// key during a rotation.
func TestEd25519Requests(t *testing.T) {
	sk, pk := tlwebhooktest.NewKeyPair()
	_, otherPK := tlwebhooktest.NewKeyPair()
	secret := tlwebhooktest.NewSecret()
	body := tlwebhooktest.Sample(tlwebhook.EventTypeSandboxCreated)

	t.Run("public key", func(t *testing.T) {
		h, r := newRecordingHandler(t, pk)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, tlwebhooktest.NewRequest(sk, "/webhooks/tensorlake", body))
		assert.Equal(t, http.StatusNoContent, rec.Code)
		assert.Equal(t, 1, r.calls)
	})
	t.Run("another public key", func(t *testing.T) {
		h, r := newRecordingHandler(t, otherPK)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, tlwebhooktest.NewRequest(sk, "/", body))
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
		assert.Zero(t, r.calls)
	})
	t.Run("HMAC secret only", func(t *testing.T) {
		h, r := newRecordingHandler(t, secret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, tlwebhooktest.NewRequest(sk, "/", body))
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
		assert.Zero(t, r.calls)
	})
	t.Run("rotation: one header signed with both kinds", func(t *testing.T) {
		edSigner, err := tlwebhooktest.NewSigner(sk)
		require.NoError(t, err)
		macSigner, err := tlwebhooktest.NewSigner(secret)
		require.NoError(t, err)
		id, now := tlwebhooktest.NewMessageID(), time.Now()
		h := edSigner.HeaderFor(id, now, body)
		h.Set("svix-signature", macSigner.Sign(id, now, body)+" "+edSigner.Sign(id, now, body))
		for name, keys := range map[string][]string{
			"HMAC secret": {secret}, "public key": {pk}, "both": {secret, pk}, "both, key first": {otherPK, pk, secret},
		} {
			v, err := tlwebhook.NewVerifier(keys[0], tlwebhook.WithSecrets(keys[1:]...))
			require.NoError(t, err)
			_, err = v.Verify(body, h)
			assert.NoError(t, err, name)
		}
		wh, err := svix.NewWebhook(secret)
		require.NoError(t, err)
		assert.NoError(t, wh.Verify(body, h), "svix verifies the v1 entry beside the v1a one")
	})
}

// A Handler for an endpoint with asymmetric signatures holds only the
// public key; tests sign with the signing key.
func ExampleNewKeyPair() {
	signingKey, publicKey := tlwebhooktest.NewKeyPair()
	h, _ := tlwebhook.NewHandler(publicKey)
	h.OnSandboxEvent(func(ctx context.Context, ev *tlwebhook.SandboxEvent) error {
		fmt.Println(ev.Type())
		return nil
	})
	req := tlwebhooktest.NewRequest(signingKey, "/webhooks/tensorlake", tlwebhooktest.Sample(tlwebhook.EventTypeSandboxFailed))
	fmt.Println(strings.SplitN(req.Header.Get("svix-signature"), ",", 2)[0])
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output:
	// v1a
	// tensorlake.sandbox.failed
	// 204
}
