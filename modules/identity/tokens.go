package identity

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/golang-jwt/jwt/v5"
)

// DefaultMaxTokenBytes bounds the bearer tokens accepted: far above a real
// token (≈1 KiB), far below what would make parsing them a cost to attackers.
const DefaultMaxTokenBytes = 8 << 10

// asymmetricAlgorithms are what a JWKS may sign with; a JWKS is public, so
// it never holds HMAC secrets.
var asymmetricAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// DefaultMaxLifetime bounds exp - iat of the tokens accepted: a token that
// leaks stays usable at most this long, whatever its issuer wrote.
const DefaultMaxLifetime = 24 * time.Hour

// maxMaxLifetime is the largest max_lifetime: beyond a year, a token is a
// password.
const maxMaxLifetime = 365 * 24 * time.Hour

var (
	errUnsupportedCrit = errors.New("critical header extensions are not supported")
	errUnknownKey      = errors.New("unknown key")
	errAlgNotAllowed   = errors.New("algorithm not allowed for this key")
	errBadClaim        = errors.New("bad identity claim")
)

// safeKID is what a kid must look like to be logged: it comes from the
// client before any signature is checked.
var safeKID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Keys verify tokens whose header names their kid.
	Keys map[string]Key
	// Default verifies tokens without a kid; nil refuses them.
	Default *Key
	// JWKS resolves kids that are not in Keys; nil for none.
	JWKS keyfunc.Keyfunc
	// Issuer and Audience are checked only when not empty.
	Issuer, Audience string
	// Leeway is the clock skew tolerated on exp, nbf and iat.
	Leeway time.Duration
	// MaxTokenBytes bounds the token; 0 means DefaultMaxTokenBytes.
	MaxTokenBytes int
	// TierClaim and TenantClaim name the claims copied to the identity.
	TierClaim, TenantClaim string
	// MaxLifetime bounds exp - iat; a token without iat may not expire later
	// than MaxLifetime (plus Leeway) from now. 0 means DefaultMaxLifetime.
	MaxLifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Cache remembers successful verifications; nil for none.
	Cache *TokenCache
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	cfg     VerifierConfig
	methods []string
	parser  *jwt.Parser
}

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg VerifierConfig) *Verifier {
	if cfg.MaxTokenBytes <= 0 {
		cfg.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var methods []string
	add := func(algs []string) {
		for _, a := range algs {
			if !slices.Contains(methods, a) {
				methods = append(methods, a)
			}
		}
	}
	for _, k := range cfg.Keys {
		add(k.Algorithms)
	}
	if cfg.Default != nil {
		add(cfg.Default.Algorithms)
	}
	if cfg.JWKS != nil {
		add(asymmetricAlgorithms)
	}
	slices.Sort(methods)
	// The parser-wide list rejects "none" and any alg no key was configured
	// for before a key is even looked up; lookup then checks the alg against
	// the one key it picked, which stops an HS256 token against an RSA key.
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(cfg.Now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &Verifier{cfg: cfg, methods: methods, parser: jwt.NewParser(opts...)}
}

// MaxTokenBytes is the largest token Verify accepts.
func (v *Verifier) MaxTokenBytes() int { return v.cfg.MaxTokenBytes }

// Verify checks token and returns the identity it carries. ctx bounds a
// JWKS refresh for an unknown kid. With a Cache, a token verified before is
// not checked again while its exp, nbf and iat still pass (leeway included)
// and its entry is younger than the cache's TTL; the Outcome is the same.
func (v *Verifier) Verify(ctx context.Context, token string) Outcome {
	if token == "" {
		return refuse(ResultMissing, "", nil)
	}
	if len(token) > v.cfg.MaxTokenBytes {
		return refuse(ResultOversized, "", fmt.Errorf("token of %d bytes", len(token)))
	}
	if v.cfg.Cache == nil {
		out, _, _ := v.verify(ctx, token)
		return out
	}
	now := v.cfg.Now()
	out, gen, hit := v.cfg.Cache.get(token, now)
	if hit {
		return out
	}
	out, from, until := v.verify(ctx, token)
	if out.Result == ResultSuccess {
		v.cfg.Cache.add(token, out, from, until, gen, now)
	}
	return out
}

// verify checks token in full. On success it also returns when the token's
// times pass the parser's checks: from from (inclusive) to until (exclusive).
func (v *Verifier) verify(ctx context.Context, token string) (out Outcome, from, until time.Time) {
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) { return v.lookup(ctx, t) })
	kid := ""
	if tok != nil {
		if s, ok := tok.Header["kid"].(string); ok && safeKID.MatchString(s) {
			kid = s
		}
	}
	if err != nil {
		return refuse(v.classify(tok, err), kid, err), from, until
	}
	if err := v.checkLifetime(claims); err != nil {
		return refuse(ResultLifetimeTooLong, kid, err), from, until
	}
	user, err := v.identity(claims)
	if err != nil {
		return refuse(ResultInvalidClaims, kid, err), from, until
	}
	user.Metadata["provider"] = providerJWT
	if kid != "" {
		user.Metadata["key_id"] = kid
	}
	from, until = v.validity(claims)
	return Outcome{Result: ResultSuccess, User: user, KeyID: kid}, from, until
}

// validity is when the time checks pass for claims they accepted:
// now < exp+leeway, now >= nbf-leeway and now >= iat-leeway (the parser's),
// and without iat now >= exp-max_lifetime-leeway (checkLifetime's). The getters
// are the parser's own, so the times are the ones it compared.
func (v *Verifier) validity(claims jwt.MapClaims) (from, until time.Time) {
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		// The parser requires exp; should that change, the empty window
		// keeps the token out of the cache rather than in it forever.
		return from, until
	}
	until = exp.Add(v.cfg.Leeway)
	nbf, _ := claims.GetNotBefore()
	iat, _ := claims.GetIssuedAt()
	for _, t := range []*jwt.NumericDate{nbf, iat} {
		if t != nil && t.Add(-v.cfg.Leeway).After(from) {
			from = t.Add(-v.cfg.Leeway)
		}
	}
	// Without iat, checkLifetime accepts the token only from
	// exp - MaxLifetime - Leeway on: a clock stepped back must not find it
	// in the cache.
	if iat == nil {
		if start := exp.Add(-v.cfg.MaxLifetime - v.cfg.Leeway); start.After(from) {
			from = start
		}
	}
	return from, until
}

// checkLifetime refuses a token valid for longer than MaxLifetime: exp - iat,
// or, without iat, exp - now (with the leeway for the issuer's clock). The
// cache keeps the second bound through validity.
func (v *Verifier) checkLifetime(claims jwt.MapClaims) error {
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return fmt.Errorf("no exp: %w", err)
	}
	iat, _ := claims.GetIssuedAt()
	if iat != nil {
		if life := exp.Sub(iat.Time); life > v.cfg.MaxLifetime {
			return fmt.Errorf("valid for %s (exp - iat), above %s", life, v.cfg.MaxLifetime)
		}
		return nil
	}
	if left := exp.Sub(v.cfg.Now()); left > v.cfg.MaxLifetime+v.cfg.Leeway {
		return fmt.Errorf("no iat, and valid for %s more, above %s", left.Round(time.Second), v.cfg.MaxLifetime)
	}
	return nil
}

// lookup is the jwt.Keyfunc: it picks the key the token names and refuses
// an alg that key was not made for. It also refuses any crit header (RFC
// 7515 §4.1.11): the gateway implements no header extension, and a token
// that says it must not be accepted without one must not be.
func (v *Verifier) lookup(ctx context.Context, t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errUnsupportedCrit
	}
	alg := t.Method.Alg()
	raw, hasKID := t.Header["kid"]
	if !hasKID {
		if v.cfg.Default == nil {
			return nil, fmt.Errorf("%w: the token names no kid and no default key is configured", errUnknownKey)
		}
		return checkedKey(*v.cfg.Default, alg)
	}
	kid, ok := raw.(string)
	if !ok {
		return nil, fmt.Errorf("%w: kid is not a string", errUnknownKey)
	}
	if k, ok := v.cfg.Keys[kid]; ok {
		return checkedKey(k, alg)
	}
	if v.cfg.JWKS == nil {
		return nil, errUnknownKey
	}
	material, err := v.cfg.JWKS.KeyfuncCtx(ctx)(t)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnknownKey, err)
	}
	algs, err := algorithmsFor(material)
	if err != nil {
		return nil, fmt.Errorf("%w: JWKS key: %w", errAlgNotAllowed, err)
	}
	if _, hmac := material.([]byte); hmac {
		return nil, fmt.Errorf("%w: a JWKS key is symmetric", errAlgNotAllowed)
	}
	return checkedKey(Key{Material: material, Algorithms: algs}, alg)
}

func checkedKey(k Key, alg string) (any, error) {
	if !slices.Contains(k.Algorithms, alg) {
		return nil, fmt.Errorf("%w: %s", errAlgNotAllowed, alg)
	}
	return k.Material, nil
}

// classify maps a parse error to a Result. Signature errors come before
// claim errors: jwt checks claims only on a correctly signed token, so an
// attacker never learns that a forged token would have been expired.
func (v *Verifier) classify(tok *jwt.Token, err error) Result {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ResultMalformed
	case errors.Is(err, errAlgNotAllowed):
		return ResultAlgNotAllowed
	case errors.Is(err, errUnsupportedCrit):
		return ResultUnsupportedCrit
	case errors.Is(err, errUnknownKey):
		return ResultUnknownKey
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if tok != nil && tok.Method != nil && !slices.Contains(v.methods, tok.Method.Alg()) {
			return ResultAlgNotAllowed
		}
		return ResultBadSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// An alg jwt does not implement, or none at all.
		return ResultAlgNotAllowed
	case errors.Is(err, jwt.ErrTokenExpired):
		return ResultExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ResultNotYetValid
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ResultIssuedInFuture
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ResultWrongIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ResultWrongAudience
	}
	return ResultInvalidClaims
}

// identity builds the user from verified claims: sub is required, and every
// value must be fit for a header and a log line.
func (v *Verifier) identity(claims jwt.MapClaims) (caddyauth.User, error) {
	sub, err := claims.GetSubject()
	if err != nil {
		return caddyauth.User{}, err
	}
	if sub == "" {
		return caddyauth.User{}, fmt.Errorf("%w: no sub", errBadClaim)
	}
	user := caddyauth.User{ID: sub, Metadata: make(map[string]string, 4)}
	for meta, claim := range map[string]string{"tier": v.cfg.TierClaim, "tenant": v.cfg.TenantClaim} {
		raw, ok := claims[claim]
		if !ok || claim == "" {
			continue
		}
		s, ok := raw.(string)
		if !ok {
			return caddyauth.User{}, fmt.Errorf("%w: %s is not a string", errBadClaim, claim)
		}
		if s != "" {
			user.Metadata[meta] = s
		}
	}
	if err := checkIdentity(user.ID, user.Metadata["tier"], user.Metadata["tenant"]); err != nil {
		return caddyauth.User{}, err
	}
	scopes, err := claimScopes(claims)
	if err != nil {
		return caddyauth.User{}, err
	}
	if len(scopes) > 0 {
		user.Metadata["scopes"] = strings.Join(scopes, " ")
	}
	return user, nil
}

// claimScopes reads the scopes of a token: the space-separated scope claim
// (RFC 8693 §4.2), else scp, which some issuers send as a list.
func claimScopes(claims jwt.MapClaims) ([]string, error) {
	raw, ok := claims["scope"]
	if !ok {
		raw, ok = claims["scp"]
	}
	if !ok {
		return nil, nil
	}
	var scopes []string
	switch v := raw.(type) {
	case string:
		scopes = strings.Fields(v)
	case []any:
		for _, s := range v {
			str, ok := s.(string)
			if !ok {
				return nil, fmt.Errorf("%w: a scope is not a string", errBadClaim)
			}
			scopes = append(scopes, str)
		}
	default:
		return nil, fmt.Errorf("%w: scope is neither a string nor a list", errBadClaim)
	}
	return CheckScopes(scopes)
}

// maxScopes bounds the scopes of one identity, which travel in a header.
const maxScopes = 64

// CheckScopes refuses scopes that are not RFC 6749 scope tokens, or too
// many; it returns them without duplicates, in their order.
func CheckScopes(scopes []string) ([]string, error) {
	var out []string
	for _, s := range scopes {
		if !ValidScope(s) {
			return nil, fmt.Errorf("%w: scope %q is not a scope token of at most %d bytes", errBadClaim, s, maxIdentityValue)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) > maxScopes {
		return nil, fmt.Errorf("%w: %d scopes, at most %d", errBadClaim, len(out), maxScopes)
	}
	return out, nil
}

// ValidScope reports whether s is an RFC 6749 §3.3 scope-token (%x21 /
// %x23-5B / %x5D-7E) of at most maxIdentityValue bytes.
func ValidScope(s string) bool {
	if s == "" || len(s) > maxIdentityValue {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return false
		}
	}
	return true
}

// maxIdentityValue bounds user ids, tiers and tenants, which become headers.
const maxIdentityValue = 256

// checkIdentity refuses values that could not travel in a header or would
// break a log line: control characters, or more than maxIdentityValue bytes.
func checkIdentity(values ...string) error {
	for _, s := range values {
		if len(s) > maxIdentityValue {
			return fmt.Errorf("%w: a value of %d bytes", errBadClaim, len(s))
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c == 0x7f {
				return fmt.Errorf("%w: a control character", errBadClaim)
			}
		}
	}
	return nil
}
