// Package identity tells who is calling: JWT bearer tokens and API keys,
// as providers for Caddy's authentication handler
// (http.authentication.providers.jwt and .api_key) and as the gateway's own
// `authenticate` handler, which drives them and gives the rest of the config
// {http.auth.user.id}, {http.auth.user.tier} and {http.auth.user.tenant}, and
// {http.auth.user.scopes}, and the upstream X-Auth-User-* headers that
// clients cannot forge.
package identity

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/lexiscore/gateway/internal/telemetry"
	"github.com/lexiscore/gateway/modules/problem"
)

func init() {
	caddy.RegisterModule(Authenticate{})
	caddy.RegisterModule(JWT{})
	caddy.RegisterModule(APIKey{})
}

// Provider names, as in the module IDs and the metric's provider label.
const (
	providerJWT    = "jwt"
	providerAPIKey = "api_key"
	providerNone   = "none"
)

// The headers the upstream receives for an authenticated request. Every
// incoming header starting with identityHeaderPrefix is removed first.
const (
	HeaderUserID         = "X-Auth-User-Id"
	HeaderUserTier       = "X-Auth-User-Tier"
	HeaderUserTenant     = "X-Auth-User-Tenant"
	HeaderUserScopes     = "X-Auth-User-Scopes"
	identityHeaderPrefix = "X-Auth-"
)

// PlaceholderScopes is the placeholder key of the caller's scopes,
// space-separated as in an OAuth scope claim: {http.auth.user.scopes}.
const PlaceholderScopes = "http.auth.user.scopes"

// ResultAnonymous counts requests without credentials let through by
// allow_anonymous; it is not a refusal.
const ResultAnonymous Result = "anonymous"

// ProblemType is the problem+json type slug of every refusal.
const ProblemType = "unauthenticated"

const tracerName = "github.com/lexiscore/gateway/modules/identity"

// spanOptions are built once: an option is an allocation.
var spanOptions = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}

// provider is a credential check that says why it refused: the stock
// caddyauth.Authenticator interface only says yes or no.
type provider interface {
	caddyauth.Authenticator
	verify(r *http.Request) Outcome
	detail(Result) string
	// credentialHeader names the header the credential travels in, as an
	// http.Header key.
	credentialHeader() string
}

type namedProvider struct {
	name string
	provider
}

// Authenticate requires a valid credential from one of its providers. It is
// the gateway's instead of Caddy's `authentication` handler because that one
// answers every refusal with the same bare 401 and tries providers in random
// order: it cannot tell a client its token expired, send an RFC 6750
// challenge, strip forged identity headers, or audit and count by reason.
// The providers it loads still work under Caddy's handler too.
type Authenticate struct {
	// Providers check credentials, tried in name order (api_key, then jwt);
	// the first that accepts wins. A request carrying no credential for any
	// of them is refused as "missing" (or let through, see AllowAnonymous);
	// otherwise the first refusal is what the client is told.
	ProvidersRaw caddy.ModuleMap `json:"providers,omitempty" caddy:"namespace=http.authentication.providers"`
	// AllowAnonymous lets requests without any credential through with no
	// identity (for routes open to all whose rate limit falls back to the
	// client IP). Invalid credentials are still refused. Default: false.
	AllowAnonymous bool `json:"allow_anonymous,omitempty"`
	// Realm is the realm of the WWW-Authenticate challenge. Default: lexiscore.
	Realm string `json:"realm,omitempty"`
	// ForwardCredentials keeps the credential on the request sent upstream:
	// the providers' headers (Authorization, X-API-Key) and the access_token
	// and api_key query parameters. By default they are removed once the
	// request is authenticated, because the upstream gets the identity in
	// X-Auth-User-* headers and needs no credential: one it never receives
	// cannot leak through its logs or be replayed by it. Turn on only for a
	// backend that checks the credential itself. Default: false.
	ForwardCredentials bool `json:"forward_credentials,omitempty"`

	providers []namedProvider
	logger    *zap.Logger
	audit     *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Authenticate) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.authenticate",
		New: func() caddy.Module { return new(Authenticate) },
	}
}

// Provision loads the providers and registers the metrics.
func (a *Authenticate) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	// Logger "http.handlers.authenticate.audit": a `log` block with
	// `include http.handlers.authenticate.audit` sends it to its own file.
	a.audit = a.logger.Named("audit")
	if a.Realm == "" {
		a.Realm = "lexiscore"
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("authenticate: registering metrics: %w", err)
	}
	mods, err := ctx.LoadModule(a, "ProvidersRaw")
	if err != nil {
		return fmt.Errorf("authenticate: loading providers: %w", err)
	}
	for name, m := range mods.(map[string]any) {
		p, ok := m.(provider)
		if !ok {
			return fmt.Errorf("authenticate: provider %q is not one of the gateway's; use Caddy's authentication handler for it", name)
		}
		a.providers = append(a.providers, namedProvider{name: name, provider: p})
	}
	slices.SortFunc(a.providers, func(x, y namedProvider) int { return strings.Compare(x.name, y.name) })
	return nil
}

// Validate checks the configuration.
func (a *Authenticate) Validate() error {
	if len(a.providers) == 0 {
		return errors.New("authenticate: no providers configured (add jwt or api_key)")
	}
	if strings.ContainsAny(a.Realm, "\"\\") || strings.IndexFunc(a.Realm, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return fmt.Errorf("authenticate: realm %q may not contain quotes, backslashes or control characters", a.Realm)
	}
	return nil
}

// ServeHTTP authenticates the request and calls next, or refuses it with a
// 401 problem document and a WWW-Authenticate challenge.
func (a *Authenticate) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	stripIdentityHeaders(r.Header)
	ctx, span := telemetry.Tracer(r.Context(), tracerName).Start(r.Context(), "authenticate", spanOptions...)
	ar := r.WithContext(ctx)

	var won, lost Outcome
	var wonBy, lostBy string
	for _, p := range a.providers {
		out := p.verify(ar)
		if out.Result == ResultMissing {
			continue
		}
		if out.Result == ResultSuccess {
			won, wonBy = out, p.name
			break
		}
		if lostBy == "" {
			lost, lostBy = out, p.name
		}
	}

	switch {
	case wonBy != "":
		a.record(r, span, wonBy, won)
		span.End()
		a.admit(r, won.User)
		a.stripCredentials(r)
		return next.ServeHTTP(w, r)
	case lostBy == "" && a.AllowAnonymous:
		authRequests.WithLabelValues(providerNone, string(ResultAnonymous)).Inc()
		span.SetAttributes(attribute.String("auth.provider", providerNone), attribute.String("auth.result", string(ResultAnonymous)))
		span.End()
		a.stripCredentials(r)
		return next.ServeHTTP(w, r)
	case lostBy == "":
		lost, lostBy = refuse(ResultMissing, "", nil), providerNone
	}
	a.record(r, span, lostBy, lost)
	span.End()

	detail := Detail(providerJWT, ResultMissing, 0)
	challenge := fmt.Sprintf(`Bearer realm="%s"`, a.Realm)
	if lost.Result != ResultMissing {
		for _, p := range a.providers {
			if p.name == lostBy {
				detail = p.detail(lost.Result)
			}
		}
		// RFC 6750 §3: an error code only when credentials were sent.
		challenge += fmt.Sprintf(`, error="invalid_token", error_description="%s"`, detail)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	cause := fmt.Errorf("%s refused the credential: %s", lostBy, lost.Result)
	if lost.Err != nil {
		cause = fmt.Errorf("%s refused the credential: %s: %w", lostBy, lost.Result, lost.Err)
	}
	return problem.WithExtensions(http.StatusUnauthorized, ProblemType, detail, map[string]any{"reason": string(ClientReason(lostBy, lost.Result))}, cause)
}

// admit publishes the identity as placeholders (as Caddy's authentication
// handler does) and as headers for the upstream.
func (a *Authenticate) admit(r *http.Request, u caddyauth.User) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", u.ID)
		for k, v := range u.Metadata {
			repl.Set("http.auth.user."+k, v)
		}
	}
	r.Header.Set(HeaderUserID, u.ID)
	if v := u.Metadata["tier"]; v != "" {
		r.Header.Set(HeaderUserTier, v)
	}
	if v := u.Metadata["tenant"]; v != "" {
		r.Header.Set(HeaderUserTenant, v)
	}
	if v := u.Metadata["scopes"]; v != "" {
		r.Header.Set(HeaderUserScopes, v)
	}
}

// credentialParams are the query parameters that carry credentials by
// convention (RFC 6750 §2.3 and the common API-key one); no provider reads
// them, but a client may still send them, and the upstream should not log them.
var credentialParams = []string{"access_token", "api_key"}

// stripCredentials removes the credentials from the request sent upstream,
// unless ForwardCredentials.
func (a *Authenticate) stripCredentials(r *http.Request) {
	if a.ForwardCredentials {
		return
	}
	for _, p := range a.providers {
		delete(r.Header, p.credentialHeader())
	}
	if r.URL.RawQuery == "" {
		return
	}
	q := r.URL.Query()
	changed := false
	for _, name := range credentialParams {
		if q.Has(name) {
			q.Del(name)
			changed = true
		}
	}
	if changed {
		r.URL.RawQuery = q.Encode()
	}
}

// record counts, audits and annotates the span with one decision. Neither
// the token nor the key is ever passed here: only the key id.
func (a *Authenticate) record(r *http.Request, span trace.Span, provider string, out Outcome) {
	authRequests.WithLabelValues(provider, string(out.Result)).Inc()
	span.SetAttributes(attribute.String("auth.provider", provider), attribute.String("auth.result", string(out.Result)))
	result := "failure"
	if out.Result == ResultSuccess {
		result = "success"
		span.SetAttributes(attribute.String("user.id", out.User.ID))
	}
	clientIP, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	a.audit.Info("authentication",
		zap.String("request_id", problem.RequestID(r)),
		zap.String("result", result),
		zap.String("reason", string(out.Result)),
		zap.String("provider", provider),
		zap.String("user_id", out.User.ID),
		zap.String("key_id", out.KeyID),
		zap.String("client_ip", clientIP),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
	)
}

// stripIdentityHeaders removes every X-Auth-* header a client sent, so only
// the gateway can set them.
func stripIdentityHeaders(h http.Header) {
	for k := range h {
		if len(k) >= len(identityHeaderPrefix) && strings.EqualFold(k[:len(identityHeaderPrefix)], identityHeaderPrefix) {
			delete(h, k)
		}
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Authenticate)(nil)
	_ caddy.Validator             = (*Authenticate)(nil)
	_ caddyhttp.MiddlewareHandler = (*Authenticate)(nil)
)
