package tlwebhook

import (
	"net/http"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/stretchr/testify/require"
)

func TestKnownAnswerSmoke(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	body := []byte(`{"test": 2432232314}`)
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	sig, err := wh.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), body)
	require.NoError(t, err)
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", sig)
	v, err := NewVerifier(secret, WithClock(func() time.Time { return time.Unix(1614265330, 0) }))
	require.NoError(t, err)
	h := http.Header{}
	h.Set("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("svix-timestamp", "1614265330")
	h.Set("svix-signature", sig)
	d, err := v.Verify(body, h)
	require.NoError(t, err)
	require.Equal(t, "msg_p5jXN8AQM9LWM0D4loKWxJek", d.ID)
	allocs := testing.AllocsPerRun(100, func() { _, _ = v.Verify(body, h) })
	t.Logf("allocs %v", allocs)
}
