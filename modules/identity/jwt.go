package identity

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"

	"github.com/lexiscore/gateway/internal/secret"
)

// JWT accepts bearer tokens (Authorization: Bearer <jwt>) signed by one of
// its keys: HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512 and
// EdDSA, each key bound to the algorithms of its type. The token must carry
// exp and sub; tier and tenant claims are copied to the identity.
type JWT struct {
	// SecretEnv names the environment variable holding an HMAC secret that
	// verifies tokens without a kid (what `gateway issue-token` signs). It is
	// read at provision time, so the secret never appears in the JSON config,
	// and the gateway refuses to start when the variable is unset, shorter
	// than 32 bytes or looks like a placeholder ("changeme", "secret", …).
	// The value is used as given (a base64 string is not decoded).
	SecretEnv string `json:"secret_env,omitempty"`
	// Keys verify tokens that name them by kid. Several may be active at once
	// so that signing keys rotate without downtime.
	Keys []KeyConfig `json:"keys,omitempty"`
	// JWKSURL is a JSON Web Key Set of the token issuer, fetched at start
	// and refreshed in the background; kids not in Keys are looked up there.
	// Tokens checked against it must name a kid. Default: none.
	JWKSURL string `json:"jwks_url,omitempty"`
	// JWKSRefreshInterval is how often the key set is refetched. Default: 15m.
	JWKSRefreshInterval caddy.Duration `json:"jwks_refresh_interval,omitempty"`
	// JWKSMinRefreshInterval bounds the extra fetches triggered by unknown
	// kids (a key just rotated in): at most one per interval. Default: 1m.
	JWKSMinRefreshInterval caddy.Duration `json:"jwks_min_refresh_interval,omitempty"`
	// JWKSTimeout bounds one fetch, and the wait of a request whose kid
	// triggered one. Default: 5s.
	JWKSTimeout caddy.Duration `json:"jwks_timeout,omitempty"`
	// Issuer, when set, must equal the iss claim. Default: not checked.
	Issuer string `json:"issuer,omitempty"`
	// Audience, when set, must be in the aud claim. Default: not checked.
	Audience string `json:"audience,omitempty"`
	// Leeway is the clock skew tolerated on exp, nbf and iat; larger values
	// keep expired tokens usable longer. Default: 30s. At most 5m.
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// MaxLifetime is the longest a token may be valid: exp - iat, or for a
	// token without iat, exp - now (plus Leeway). A longer-lived token is
	// refused even when its issuer signed it, so a leaked token is useful
	// for at most this long; longer values suit issuers of long-lived
	// service tokens, shorter ones shrink that window. Default: 24h. From 1m
	// to 8760h (a year).
	MaxLifetime caddy.Duration `json:"max_lifetime,omitempty"`
	// MaxTokenSize is the largest token in bytes; larger ones are refused
	// before parsing. Default: 8192.
	MaxTokenSize int `json:"max_token_size,omitempty"`
	// TierClaim and TenantClaim name the claims that become the tier and
	// tenant metadata. Default: "tier" and "tenant".
	TierClaim   string `json:"tier_claim,omitempty"`
	TenantClaim string `json:"tenant_claim,omitempty"`
	// CacheTTL is how long a successful verification is remembered, so that
	// a token sent on every request has its signature checked and its claims
	// decoded once per TTL instead of each time. The answer stays the one a
	// full check would give: exp, nbf and iat are compared with the clock on
	// every request, the cache is emptied by every successful JWKS fetch,
	// and a config reload starts a new one. Refusals are never cached. Longer
	// saves little more CPU (one full check per token per TTL is already
	// rare) and trusts a past check longer. Default: 1m; 0 turns the cache
	// off. At most 1h.
	CacheTTL *caddy.Duration `json:"cache_ttl,omitempty"`
	// CacheSize bounds the tokens remembered; the least recently used goes
	// first. Each costs the token's length plus about 650 bytes (≈9 MB for
	// 10000 tokens of 300 bytes). Below the number of tokens in use, most
	// requests are checked in full again. Default: 10000. From 1 to 1000000.
	CacheSize int `json:"cache_size,omitempty"`

	verifier *Verifier
	logger   *zap.Logger
}

// KeyConfig is one verification key, named by the kid of the tokens it
// verifies.
type KeyConfig struct {
	// ID is the kid.
	ID string `json:"kid"`
	// Type is "hmac" (a shared secret: the same strength rules as
	// secret_env) or "public_key" (PEM: PKIX public key, PKCS #1 RSA public
	// key, or certificate).
	Type string `json:"type"`
	// Env names an environment variable holding the key, or File a file;
	// only one may hold a value (internal/secret's rule for every secret).
	// Trailing line breaks of a file are dropped.
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
	// Algorithms narrows the algs accepted for this key. Default: every alg
	// of its type (HMAC: HS*; RSA: RS*, PS*; ECDSA: the curve's ES*; Ed25519: EdDSA).
	Algorithms []string `json:"algorithms,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (JWT) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.authentication.providers.jwt",
		New: func() caddy.Module { return new(JWT) },
	}
}

// Provision loads the keys and starts the JWKS refresh.
func (j *JWT) Provision(ctx caddy.Context) error {
	j.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("jwt: registering metrics: %w", err)
	}
	precreateJWKSMetrics()
	if j.JWKSRefreshInterval == 0 {
		j.JWKSRefreshInterval = caddy.Duration(15 * time.Minute)
	}
	if j.JWKSMinRefreshInterval == 0 {
		j.JWKSMinRefreshInterval = caddy.Duration(time.Minute)
	}
	if j.JWKSTimeout == 0 {
		j.JWKSTimeout = caddy.Duration(5 * time.Second)
	}
	if j.Leeway == 0 {
		j.Leeway = caddy.Duration(30 * time.Second)
	}
	if j.MaxTokenSize == 0 {
		j.MaxTokenSize = DefaultMaxTokenBytes
	}
	if j.MaxLifetime == 0 {
		j.MaxLifetime = caddy.Duration(DefaultMaxLifetime)
	}
	if j.TierClaim == "" {
		j.TierClaim = "tier"
	}
	if j.TenantClaim == "" {
		j.TenantClaim = "tenant"
	}
	if j.CacheTTL == nil {
		j.CacheTTL = new(caddy.Duration(DefaultCacheTTL))
	}
	if j.CacheSize == 0 {
		j.CacheSize = DefaultCacheSize
	}
	// Built before the JWKS: its first fetch, inside NewJWKS, already
	// reports to OnRefresh.
	var cache *TokenCache
	if *j.CacheTTL > 0 {
		var err error
		if cache, err = NewTokenCache(j.CacheSize, time.Duration(*j.CacheTTL)); err != nil {
			return fmt.Errorf("jwt: cache_size %d: %w", j.CacheSize, err)
		}
	}
	cfg := VerifierConfig{
		Keys:          make(map[string]Key, len(j.Keys)),
		Issuer:        j.Issuer,
		Audience:      j.Audience,
		Leeway:        time.Duration(j.Leeway),
		MaxTokenBytes: j.MaxTokenSize,
		MaxLifetime:   time.Duration(j.MaxLifetime),
		TierClaim:     j.TierClaim,
		TenantClaim:   j.TenantClaim,
		Cache:         cache,
	}
	if j.SecretEnv != "" {
		material, err := secret.Load(j.SecretEnv, "")
		if err != nil {
			return fmt.Errorf("jwt: secret_env %s: %w", j.SecretEnv, err)
		}
		k, _ := newKey(material, nil)
		cfg.Default = &k
	}
	for _, kc := range j.Keys {
		if _, dup := cfg.Keys[kc.ID]; dup {
			return fmt.Errorf("jwt: key %q is configured twice", kc.ID)
		}
		k, err := kc.load()
		if err != nil {
			return fmt.Errorf("jwt: key %q: %w", kc.ID, err)
		}
		cfg.Keys[kc.ID] = k
	}
	if j.JWKSURL != "" {
		u, err := url.Parse(j.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("jwt: jwks_url %q is not an http(s) URL", j.JWKSURL)
		}
		logger := j.logger
		cfg.JWKS, err = NewJWKS(ctx, JWKSOptions{
			URL:                j.JWKSURL,
			RefreshInterval:    time.Duration(j.JWKSRefreshInterval),
			MinRefreshInterval: time.Duration(j.JWKSMinRefreshInterval),
			Timeout:            time.Duration(j.JWKSTimeout),
			OnRefresh: func(err error) {
				jwksRefreshes.WithLabelValues(resultLabel(err)).Inc()
				if err != nil {
					logger.Warn("JWKS refresh failed; keeping the last good keys", zap.String("url", u.Redacted()), zap.Error(err))
					return
				}
				// A key that left the set must stop verifying now, not
				// when the tokens it verified leave the cache.
				if cache != nil {
					cache.Purge()
				}
			},
		})
		if err != nil {
			return fmt.Errorf("jwt: jwks_url: %w", err)
		}
	}
	j.verifier = NewVerifier(cfg)
	return nil
}

// Validate checks the configuration.
func (j *JWT) Validate() error {
	if j.SecretEnv == "" && len(j.Keys) == 0 && j.JWKSURL == "" {
		return errors.New("jwt: no keys: set secret_env, key or jwks_url")
	}
	if j.Leeway < 0 || time.Duration(j.Leeway) > 5*time.Minute {
		return fmt.Errorf("jwt: leeway %s is outside 0 to 5m", time.Duration(j.Leeway))
	}
	if j.MaxLifetime < caddy.Duration(time.Minute) || time.Duration(j.MaxLifetime) > maxMaxLifetime {
		return fmt.Errorf("jwt: max_lifetime %s is outside 1m to %s", time.Duration(j.MaxLifetime), maxMaxLifetime)
	}
	if j.MaxTokenSize < 256 || j.MaxTokenSize > 1<<20 {
		return fmt.Errorf("jwt: max_token_size %d is outside 256 to 1048576 bytes", j.MaxTokenSize)
	}
	if j.JWKSMinRefreshInterval < 0 || j.JWKSRefreshInterval < caddy.Duration(time.Second) || j.JWKSTimeout < 0 {
		return errors.New("jwt: JWKS intervals and timeout must be positive, the refresh interval at least 1s")
	}
	if j.CacheTTL != nil && (*j.CacheTTL < 0 || time.Duration(*j.CacheTTL) > maxCacheTTL) {
		return fmt.Errorf("jwt: cache_ttl %s is outside 0 (off) to %s", time.Duration(*j.CacheTTL), maxCacheTTL)
	}
	if j.CacheSize < 1 || j.CacheSize > maxCacheSize {
		return fmt.Errorf("jwt: cache_size %d is outside 1 to %d", j.CacheSize, maxCacheSize)
	}
	return nil
}

// Authenticate implements caddyauth.Authenticator, for use under Caddy's
// authentication handler.
func (j *JWT) Authenticate(w http.ResponseWriter, r *http.Request) (caddyauth.User, bool, error) {
	out := j.verify(r)
	switch out.Result {
	case ResultSuccess:
		return out.User, true, nil
	case ResultMissing:
		w.Header().Set("WWW-Authenticate", "Bearer")
	default:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	return caddyauth.User{}, false, nil
}

func (j *JWT) verify(r *http.Request) Outcome {
	token, res := bearerToken(r.Header)
	if res != ResultSuccess {
		return refuse(res, "", nil)
	}
	return j.verifier.Verify(r.Context(), token)
}

func (j *JWT) detail(r Result) string { return Detail(providerJWT, r, j.MaxTokenSize) }

func (*JWT) credentialHeader() string { return "Authorization" }

// bearerToken returns the token of an "Authorization: Bearer" header;
// another scheme counts as no token, for another provider to look at.
func bearerToken(h http.Header) (string, Result) {
	vals := h.Values("Authorization")
	if len(vals) == 0 {
		return "", ResultMissing
	}
	if len(vals) > 1 {
		return "", ResultMalformed
	}
	scheme, token, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ResultMissing
	}
	if token = strings.TrimSpace(token); token == "" {
		return "", ResultMalformed
	}
	return token, ResultSuccess
}

// load reads the key and binds it to its algorithms.
func (kc KeyConfig) load() (Key, error) {
	if !safeKID.MatchString(kc.ID) {
		return Key{}, errors.New("the kid must be 1 to 128 of A-Z a-z 0-9 . _ : -")
	}
	switch kc.Type {
	case "hmac":
		material, err := secret.Load(kc.Env, kc.File)
		if err != nil {
			return Key{}, err
		}
		return newKey(material, kc.Algorithms)
	case "public_key":
		data, err := secret.Read(kc.Env, kc.File)
		if err != nil {
			return Key{}, err
		}
		pub, err := parsePublicKey(data)
		if err != nil {
			return Key{}, fmt.Errorf("public key: %w", err)
		}
		return newKey(pub, kc.Algorithms)
	}
	return Key{}, fmt.Errorf("type %q is neither hmac nor public_key", kc.Type)
}

// Interface guards
var (
	_ caddy.Provisioner       = (*JWT)(nil)
	_ caddy.Validator         = (*JWT)(nil)
	_ caddyauth.Authenticator = (*JWT)(nil)
	_ provider                = (*JWT)(nil)
)
