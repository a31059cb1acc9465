package tlwebhook

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// SvixSourcesUS returns the static addresses Svix publishes for webhook
// traffic from its US region. The list can change and is not guaranteed on
// every Svix pricing tier: check Svix's documentation before relying on it.
func SvixSourcesUS() []netip.Prefix {
	return mustPrefixes("44.228.126.217/32", "50.112.21.217/32", "52.24.126.164/32",
		"54.148.139.208/32", "2600:1f24:64:8000::/56")
}

// SvixSourcesEU returns the static addresses Svix publishes for webhook
// traffic from its EU region; see [SvixSourcesUS] for the caveats.
func SvixSourcesEU() []netip.Prefix {
	return mustPrefixes("52.215.16.239/32", "54.216.8.72/32", "63.33.109.123/32",
		"2a05:d028:17:8000::/56")
}

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// WithAllowedSources accepts deliveries only from client addresses within
// the given prefixes, for example [SvixSourcesUS]. Other requests get 403
// before anything else is checked or read. The client address is the
// connection's remote address, unless that address is a trusted proxy (see
// [WithTrustedProxies]). Calling it more than once adds prefixes.
func WithAllowedSources(prefixes ...netip.Prefix) VerifierOption {
	return verifierOption(func(c *verifierConfig) error {
		for _, p := range prefixes {
			if !p.IsValid() {
				return optionError("WithAllowedSources", "invalid prefix %v", p)
			}
			c.allowed = append(c.allowed, unmapPrefix(p))
		}
		c.sourceCheck = true
		return nil
	})
}

// WithTrustedProxies names the reverse proxies or load balancers in front of
// the server. When a request's remote address is within these prefixes, the
// client address for [WithAllowedSources] is taken from X-Forwarded-For: the
// right-most entry that is not itself a trusted proxy. Entries a client
// wrote itself lie to the left of that and are never used, so the address
// cannot be spoofed as long as every trusted proxy appends to the header.
func WithTrustedProxies(prefixes ...netip.Prefix) VerifierOption {
	return verifierOption(func(c *verifierConfig) error {
		for _, p := range prefixes {
			if !p.IsValid() {
				return optionError("WithTrustedProxies", "invalid prefix %v", p)
			}
			c.trusted = append(c.trusted, unmapPrefix(p))
		}
		return nil
	})
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix such as ::ffff:10.0.0.0/104
// into its IPv4 form, since addresses are unmapped before matching.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() {
		bits := max(p.Bits()-96, 0)
		return netip.PrefixFrom(p.Addr().Unmap(), bits).Masked()
	}
	return p.Masked()
}

func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
}

// clientAddr determines the client address of r; see WithTrustedProxies.
func (c *verifierConfig) clientAddr(r *http.Request) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, err2 := netip.ParseAddr(r.RemoteAddr)
		if err2 != nil {
			return netip.Addr{}, fmt.Errorf("%w: remote address %q does not parse", ErrSourceNotAllowed, truncate(r.RemoteAddr, 64))
		}
		ap = netip.AddrPortFrom(a, 0)
	}
	addr := ap.Addr().Unmap()
	if !containsAddr(c.trusted, addr) {
		return addr, nil
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			s := strings.TrimSpace(parts[j])
			hop, err := netip.ParseAddr(s)
			if err != nil {
				return netip.Addr{}, fmt.Errorf("%w: malformed X-Forwarded-For entry", ErrSourceNotAllowed)
			}
			addr = hop.Unmap()
			if !containsAddr(c.trusted, addr) {
				return addr, nil
			}
		}
	}
	// Every hop is a trusted proxy: the request originated inside.
	return addr, nil
}

// checkSource applies the allowlist, if any.
func (c *verifierConfig) checkSource(r *http.Request) error {
	if !c.sourceCheck {
		return nil
	}
	addr, err := c.clientAddr(r)
	if err != nil {
		return err
	}
	if !containsAddr(c.allowed, addr) {
		return fmt.Errorf("%w: %v", ErrSourceNotAllowed, addr)
	}
	return nil
}
