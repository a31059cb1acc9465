package tlwebhook_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tl "github.com/tlwebhook/tlwebhook"
)

// Svix's published webhook source addresses, as listed in section 4 of the
// reference page (reference/tensorlake-webhooks.md).
var (
	refSvixUS = []string{"44.228.126.217", "50.112.21.217", "52.24.126.164", "54.148.139.208", "2600:1f24:64:8000::/56"}
	refSvixEU = []string{"52.215.16.239", "54.216.8.72", "63.33.109.123", "2a05:d028:17:8000::/56"}
)

// refPrefixes parses the reference list: bare addresses are single hosts.
func refPrefixes(t *testing.T, list []string) []netip.Prefix {
	t.Helper()
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			require.NoError(t, err)
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		require.NoError(t, err)
		out = append(out, p)
	}
	return out
}

func TestSvixSourcesMatchReference(t *testing.T) {
	cases := []struct {
		name string
		got  func() []netip.Prefix
		want []string
	}{
		{"US", tl.SvixSourcesUS, refSvixUS},
		{"EU", tl.SvixSourcesEU, refSvixEU},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.got()
			assert.ElementsMatch(t, refPrefixes(t, tc.want), got)
			for _, p := range got {
				assert.True(t, p.IsValid(), "%v", p)
				assert.Equal(t, p.Masked(), p, "%v is not in canonical form", p)
			}
			// Each call returns a fresh slice: a caller's change does not
			// leak into other handlers.
			got[0] = netip.MustParsePrefix("0.0.0.0/0")
			assert.NotEqual(t, got[0], tc.got()[0])
		})
	}
}

// sourceRequest returns a signed delivery from remote, with the given
// X-Forwarded-For header lines, whose body counts the bytes read from it.
func sourceRequest(t *testing.T, method, remote string, xff []string, read *atomic.Int64) *http.Request {
	t.Helper()
	body := []byte(advJob)
	req := httptest.NewRequest(method, "/hook", strings.NewReader(advJob))
	for k, v := range advHeaders(t, advWebhook(t, advSecret), "msg_source", body) {
		req.Header[k] = v
	}
	for _, v := range xff {
		req.Header.Add("X-Forwarded-For", v)
	}
	req.RemoteAddr = remote
	req.Body = countingReadCloser{ReadCloser: req.Body, n: read}
	return req
}

// assertSource serves req and checks the verdict: 204 with one callback
// when allowed; 403, no callback and no byte of the body read when not.
func assertSource(t *testing.T, h http.Handler, rec *advRecorder, req *http.Request, read *atomic.Int64, allowed bool) {
	t.Helper()
	before := rec.calls.Load()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if allowed {
		assert.Equal(t, http.StatusNoContent, w.Code)
		assert.Equal(t, before+1, rec.calls.Load())
		return
	}
	assert.Equal(t, http.StatusForbidden, w.Code)
	assert.Equal(t, "source address not allowed\n", w.Body.String())
	assert.Equal(t, before, rec.calls.Load(), "callback ran")
	assert.Zero(t, read.Load(), "body read before the source check")
}

func TestSourceAllowlistDirect(t *testing.T) {
	h, rec := newAdvHandler(t, tl.WithAllowedSources(tl.SvixSourcesUS()...))
	cases := []struct {
		name    string
		method  string
		remote  string
		allowed bool
	}{
		{"listed IPv4", http.MethodPost, "44.228.126.217:443", true},
		{"every listed IPv4", http.MethodPost, "54.148.139.208:1", true},
		{"listed IPv4 without port", http.MethodPost, "44.228.126.217", true},
		{"IPv4-mapped IPv6 of a listed address", http.MethodPost, "[::ffff:44.228.126.217]:443", true},
		{"inside the IPv6 /56", http.MethodPost, "[2600:1f24:64:80ff:ffff::1]:443", true},
		{"just outside the IPv6 /56", http.MethodPost, "[2600:1f24:64:8100::1]:443", false},
		{"neighbour of a listed IPv4", http.MethodPost, "44.228.126.218:443", false},
		{"EU address on a US allowlist", http.MethodPost, "52.215.16.239:443", false},
		{"documentation address", http.MethodPost, "198.51.100.7:1234", false},
		{"loopback", http.MethodPost, "127.0.0.1:80", false},
		{"IPv6 with zone", http.MethodPost, "[fe80::1%eth0]:80", false},
		{"empty remote address", http.MethodPost, "", false},
		{"unparsable remote address", http.MethodPost, "somewhere:80", false},
		{"GET from outside: 403 before 405", http.MethodGet, "198.51.100.7:1234", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var read atomic.Int64
			req := sourceRequest(t, tc.method, tc.remote, nil, &read)
			assertSource(t, h, rec, req, &read, tc.allowed)
		})
	}
}

func TestSourceTrustedProxies(t *testing.T) {
	h, rec := newAdvHandler(t,
		tl.WithAllowedSources(tl.SvixSourcesUS()...),
		tl.WithTrustedProxies(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")),
	)
	const proxy = "10.0.0.5:34567"
	cases := []struct {
		name    string
		remote  string
		xff     []string
		allowed bool
	}{
		{"proxy forwards a listed client", proxy, []string{"44.228.126.217"}, true},
		{"IPv6 proxy forwards a listed client", "[fd00::1]:443", []string{"44.228.126.217"}, true},
		{"client spoofs a listed address on the left", proxy, []string{"44.228.126.217, 203.0.113.9"}, false},
		{"client's own entries on the left are ignored", proxy, []string{"203.0.113.9, 44.228.126.217"}, true},
		{"garbage written by the client is never parsed", proxy, []string{"not-an-ip, 44.228.126.217"}, true},
		{"chain of trusted proxies", proxy, []string{"44.228.126.217, 10.0.0.7, 10.1.2.3"}, true},
		{"spoof behind a chain of trusted proxies", proxy, []string{"44.228.126.217, 203.0.113.9, 10.0.0.7"}, false},
		{"several headers: the last is the proxy's", proxy, []string{"44.228.126.217", "203.0.113.9"}, false},
		{"several headers: listed client last", proxy, []string{"203.0.113.9", "44.228.126.217"}, true},
		{"several headers with trusted hops", proxy, []string{"44.228.126.217", "10.0.0.7, 10.0.0.8", "10.0.0.9"}, true},
		{"IPv4-mapped client", proxy, []string{"::ffff:44.228.126.217"}, true},
		{"listed IPv6 client", proxy, []string{"2600:1f24:64:8000::abc"}, true},
		{"no header: the client is the proxy", proxy, nil, false},
		{"only trusted hops", proxy, []string{"10.0.0.9, 10.0.0.8"}, false},
		{"malformed entry", proxy, []string{"bogus"}, false},
		{"entry with a port", proxy, []string{"44.228.126.217:443"}, false},
		{"bracketed IPv6 entry", proxy, []string{"[2600:1f24:64:8000::abc]"}, false},
		{"empty header", proxy, []string{""}, false},
		{"trailing comma", proxy, []string{"44.228.126.217,"}, false},
		{"untrusted remote: header ignored (spoof)", "203.0.113.9:1234", []string{"44.228.126.217"}, false},
		{"untrusted remote: header ignored (listed remote)", "44.228.126.217:443", []string{"203.0.113.9"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var read atomic.Int64
			req := sourceRequest(t, http.MethodPost, tc.remote, tc.xff, &read)
			assertSource(t, h, rec, req, &read, tc.allowed)
		})
	}
}

// TestSourceOverRealServer runs the allowlist through a real connection:
// the remote address is the loopback client's.
func TestSourceOverRealServer(t *testing.T) {
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	cases := []struct {
		name    string
		opts    []tl.HandlerOption
		xff     string
		allowed bool
	}{
		{"loopback allowed", []tl.HandlerOption{tl.WithAllowedSources(loopback)}, "", true},
		{"Svix only", []tl.HandlerOption{tl.WithAllowedSources(tl.SvixSourcesUS()...)}, "", false},
		{"Svix only, spoofed header, no trusted proxy", []tl.HandlerOption{tl.WithAllowedSources(tl.SvixSourcesUS()...)}, "44.228.126.217", false},
		{"loopback is a trusted proxy forwarding Svix", []tl.HandlerOption{tl.WithAllowedSources(tl.SvixSourcesUS()...), tl.WithTrustedProxies(loopback)}, "44.228.126.217", true},
		{"loopback is a trusted proxy forwarding a stranger", []tl.HandlerOption{tl.WithAllowedSources(tl.SvixSourcesUS()...), tl.WithTrustedProxies(loopback)}, "44.228.126.217, 203.0.113.9", false},
		{"no allowlist", nil, "", true},
	}
	wh := advWebhook(t, advSecret)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, rec := newAdvHandler(t, tc.opts...)
			var read atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.Body = countingReadCloser{ReadCloser: r.Body, n: &read}
				h.ServeHTTP(w, r)
			}))
			defer srv.Close()
			hdr := advHeaders(t, wh, "msg_real", []byte(advJob))
			if tc.xff != "" {
				hdr.Set("X-Forwarded-For", tc.xff)
			}
			status := advPost(t, srv.Client(), srv.URL, hdr, advJob)
			if tc.allowed {
				assert.Equal(t, http.StatusNoContent, status)
				assert.Equal(t, int32(1), rec.calls.Load())
				return
			}
			assert.Equal(t, http.StatusForbidden, status)
			assert.Zero(t, rec.calls.Load())
			assert.Zero(t, read.Load(), "the handler read the body of a refused request")
		})
	}
}

// TestSourceMiddleware checks that Verifier.Middleware applies the
// allowlist too.
func TestSourceMiddleware(t *testing.T) {
	v, err := tl.NewVerifier(advSecret, tl.WithAllowedSources(tl.SvixSourcesEU()...), tl.WithLogger(discardLogger()))
	require.NoError(t, err)
	var nextCalls atomic.Int32
	mw := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nextCalls.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, tc := range []struct {
		remote string
		want   int
	}{
		{"63.33.109.123:443", http.StatusNoContent},
		{"[2a05:d028:17:8000::5]:443", http.StatusNoContent},
		{"44.228.126.217:443", http.StatusForbidden},
	} {
		t.Run(tc.remote, func(t *testing.T) {
			var read atomic.Int64
			req := sourceRequest(t, http.MethodPost, tc.remote, nil, &read)
			before := nextCalls.Load()
			w := httptest.NewRecorder()
			mw.ServeHTTP(w, req)
			assert.Equal(t, tc.want, w.Code)
			if tc.want == http.StatusForbidden {
				assert.Equal(t, before, nextCalls.Load())
				assert.Zero(t, read.Load())
			} else {
				assert.Equal(t, before+1, nextCalls.Load())
			}
		})
	}
}

// TestSourceOptions covers the options' edge cases.
func TestSourceOptions(t *testing.T) {
	t.Run("invalid prefix is an error", func(t *testing.T) {
		_, err := tl.NewHandler(advSecret, tl.WithAllowedSources(netip.Prefix{}))
		assert.Error(t, err)
		_, err = tl.NewHandler(advSecret, tl.WithTrustedProxies(netip.Prefix{}))
		assert.Error(t, err)
	})
	t.Run("unmasked prefix is accepted as its network", func(t *testing.T) {
		h, rec := newAdvHandler(t, tl.WithAllowedSources(netip.MustParsePrefix("44.228.126.217/24")))
		var read atomic.Int64
		assertSource(t, h, rec, sourceRequest(t, http.MethodPost, "44.228.126.1:443", nil, &read), &read, true)
	})
	t.Run("repeated option adds prefixes", func(t *testing.T) {
		h, rec := newAdvHandler(t, tl.WithAllowedSources(tl.SvixSourcesUS()...), tl.WithAllowedSources(tl.SvixSourcesEU()...))
		for _, remote := range []string{"44.228.126.217:1", "52.215.16.239:1"} {
			var read atomic.Int64
			assertSource(t, h, rec, sourceRequest(t, http.MethodPost, remote, nil, &read), &read, true)
		}
	})
	t.Run("empty allowlist refuses everyone", func(t *testing.T) {
		// Fails closed: WithAllowedSources() with nothing (for example an
		// empty configuration value) allows no address at all.
		h, rec := newAdvHandler(t, tl.WithAllowedSources())
		var read atomic.Int64
		assertSource(t, h, rec, sourceRequest(t, http.MethodPost, "44.228.126.217:1", nil, &read), &read, false)
	})
	t.Run("trusted proxies alone check nothing", func(t *testing.T) {
		h, rec := newAdvHandler(t, tl.WithTrustedProxies(netip.MustParsePrefix("10.0.0.0/8")))
		var read atomic.Int64
		assertSource(t, h, rec, sourceRequest(t, http.MethodPost, "10.0.0.1:1", []string{"203.0.113.9"}, &read), &read, true)
	})
	t.Run("IPv4-mapped allowlist prefix", func(t *testing.T) {
		// Addresses are unmapped before matching, so prefixes must be
		// too: a prefix written in IPv4-mapped form matches the IPv4
		// address instead of silently matching nothing.
		h, rec := newAdvHandler(t, tl.WithAllowedSources(netip.MustParsePrefix("::ffff:44.228.126.217/128")))
		var read atomic.Int64
		assertSource(t, h, rec, sourceRequest(t, http.MethodPost, "44.228.126.217:443", nil, &read), &read, true)
		read.Store(0)
		assertSource(t, h, rec, sourceRequest(t, http.MethodPost, "44.228.126.218:443", nil, &read), &read, false)
	})
	t.Run("IPv4-mapped trusted proxy prefix", func(t *testing.T) {
		h, rec := newAdvHandler(t,
			tl.WithAllowedSources(tl.SvixSourcesUS()...),
			tl.WithTrustedProxies(netip.MustParsePrefix("::ffff:10.0.0.0/104")))
		var read atomic.Int64
		assertSource(t, h, rec, sourceRequest(t, http.MethodPost, "10.0.0.5:443", []string{"44.228.126.217"}, &read), &read, true)
		read.Store(0)
		assertSource(t, h, rec, sourceRequest(t, http.MethodPost, "10.0.0.5:443", []string{"44.228.126.217, 203.0.113.9"}, &read), &read, false)
	})
}

// discardLogger returns a logger that drops everything.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
