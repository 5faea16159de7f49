package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
)

// How a handler treats requests without an identity (see Identity).
const (
	// AnonymousDeny refuses them: the route is meant for authenticated users.
	AnonymousDeny = "deny"
	// AnonymousFallback counts them by client address.
	AnonymousFallback = "fallback"
	// AnonymousAlways counts every request by client address: the route is
	// anonymous, whoever the user is.
	AnonymousAlways = "always"
)

// maxKeyLen bounds store keys. A longer identity (from a client-chosen
// header, say) is replaced by its SHA-256, so a client cannot make the
// store hold large keys.
const maxKeyLen = 128

// Identity returns the limiter key of a request, or false when it has none
// and must be refused.
//
// key is the handler's key template with its placeholders replaced, and
// keyOK is false when any of them was unknown or empty (an unauthenticated
// request has no {http.auth.user.id}). clientIP is Caddy's client_ip, which
// honours trusted_proxies; the raw X-Forwarded-For is never read.
//
//   - mode always: "ip:" + the client's address, whatever the key.
//   - keyOK: "id:" + key.
//   - mode fallback: "ip:" + the client's address.
//   - mode deny (the default): no key.
//
// An IPv6 client is counted by its /64, the block one subscriber usually
// holds: counting single IPv6 addresses would let a client rotate through
// its block and never be limited.
func Identity(mode, key string, keyOK bool, clientIP string) (string, bool) {
	if mode != AnonymousAlways && keyOK {
		return "id:" + bounded(key), true
	}
	if mode != AnonymousFallback && mode != AnonymousAlways {
		return "", false
	}
	addr, err := netip.ParseAddr(clientIP)
	if err != nil {
		return "ip:" + bounded(clientIP), true
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		return "ip:" + netip.PrefixFrom(addr, 64).Masked().String(), true
	}
	return "ip:" + addr.String(), true
}

func bounded(s string) string {
	if len(s) <= maxKeyLen {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}
