// Package authorization decides whether an authenticated caller may reach
// the resource a request names (OWASP API1, broken object-level
// authorization): the `authorize` handler compares what the gateway can see,
// path segments against the caller's identity and scopes, under policies
// written in the Caddyfile. Ownership it cannot see (which user created a
// score) is left to the backend, which gets the identity in signed headers.
package authorization

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/lexiscore/gateway/modules/identity"
	"github.com/lexiscore/gateway/modules/problem"
)

func init() {
	caddy.RegisterModule(Authorize{})
}

// ProblemType is the problem+json type of a refusal with status 403; a
// refusal configured as 404 is the gateway's ordinary not-found, so that it
// says nothing about whether the resource exists.
const ProblemType = "forbidden"

// Authorize refuses requests whose path names a resource the caller may not
// reach. It runs after authenticate, whose placeholders it reads.
type Authorize struct {
	// Policies are tried in order; the first whose path template matches
	// the request decides, and a request that matches none passes (the
	// backend still checks what the gateway cannot see). Put the most
	// specific templates first.
	Policies []Policy `json:"policies,omitempty"`

	policies []compiledPolicy
	audit    *zap.Logger
}

// Policy says who may reach the paths matching a template.
type Policy struct {
	// Name identifies the policy in metrics, the audit log and errors:
	// letters, digits and _.
	Name string `json:"name"`
	// Path is the template: /literal/{param}/..., optionally ending in /*
	// for any further segments, e.g. /v1/users/{user}/*.
	Path string `json:"path"`
	// Allow lists the grants, any one of which lets the request through:
	// a parameter equal to an identity placeholder (the caller's own
	// resources), or one of some scopes (e.g. an operator's). With none,
	// every request matching the path is refused.
	Allow []Grant `json:"allow,omitempty"`
	// DenyStatus is the status of a refusal: 403 (forbidden), or 404 where
	// a refusal would tell that the resource exists. Default: 403.
	DenyStatus int `json:"deny_status,omitempty"`
}

type compiledPolicy struct {
	Policy
	tmpl Template
}

// CaddyModule returns the Caddy module information.
func (Authorize) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.authorize",
		New: func() caddy.Module { return new(Authorize) },
	}
}

// Provision compiles the policies and registers the metrics.
func (a *Authorize) Provision(ctx caddy.Context) error {
	// Logger "http.handlers.authorize.audit", beside authenticate's.
	a.audit = ctx.Logger().Named("audit")
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("authorize: registering metrics: %w", err)
	}
	a.policies = a.policies[:0]
	for i := range a.Policies {
		p := &a.Policies[i]
		if p.DenyStatus == 0 {
			p.DenyStatus = http.StatusForbidden
		}
		tmpl, err := ParseTemplate(p.Path)
		if err != nil {
			return fmt.Errorf("authorize: policy %s: %w", p.Name, err)
		}
		a.policies = append(a.policies, compiledPolicy{Policy: *p, tmpl: tmpl})
	}
	return nil
}

// Validate checks the policies.
func (a *Authorize) Validate() error {
	if len(a.policies) == 0 {
		return errors.New("authorize: no policy configured")
	}
	seen := map[string]bool{}
	for _, p := range a.policies {
		if !validName(p.Name) || seen[p.Name] {
			return fmt.Errorf("authorize: policy name %q is empty, repeated or not letters, digits and _", p.Name)
		}
		seen[p.Name] = true
		if p.DenyStatus != http.StatusForbidden && p.DenyStatus != http.StatusNotFound {
			return fmt.Errorf("authorize: policy %s: deny_status %d is neither 403 nor 404", p.Name, p.DenyStatus)
		}
		for _, g := range p.Allow {
			if err := g.check(p.tmpl); err != nil {
				return fmt.Errorf("authorize: policy %s: %w", p.Name, err)
			}
		}
	}
	return nil
}

// ServeHTTP lets the request through when the first policy matching its
// path allows it (or none matches), else refuses it with a problem. A path
// routers could split in different ways is a 400: a policy must see the
// path the backend routes.
func (a *Authorize) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	segs, err := Segments(r.URL.EscapedPath())
	if err != nil {
		return problem.New(http.StatusBadRequest, "bad-request", "The request path is malformed.", fmt.Errorf("authorize: %w", err))
	}
	for _, p := range a.policies {
		params, ok := p.tmpl.Match(segs)
		if !ok {
			continue
		}
		repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if repl == nil {
			repl = caddy.NewReplacer()
		}
		grant := allows(p.Allow, params, callerOf(repl))
		if grant != "" {
			decisions.WithLabelValues(p.Name, decisionAllow, grant).Inc()
			// Reaching another's data by scope is what support access looks
			// like, and what a stolen operator token looks like: audited.
			if grant == grantScope {
				a.record(r, p.Name, repl, decisionAllow, grant, 0)
			}
			return next.ServeHTTP(w, r)
		}
		decisions.WithLabelValues(p.Name, decisionDeny, grantNone).Inc()
		a.record(r, p.Name, repl, decisionDeny, grantNone, p.DenyStatus)
		cause := fmt.Errorf("authorize: policy %s refused %s %s", p.Name, r.Method, r.URL.Path)
		if p.DenyStatus == http.StatusNotFound {
			return problem.New(http.StatusNotFound, "not-found", "No resource matches this path.", cause)
		}
		return problem.WithExtensions(http.StatusForbidden, ProblemType, "You may not access this resource.",
			map[string]any{"policy": p.Name}, cause)
	}
	return next.ServeHTTP(w, r)
}

// callerOf reads the caller's identity from the request's placeholders. An
// unset placeholder reads as empty, never as its own text, which a path
// segment could otherwise spell out and equal.
func callerOf(repl *caddy.Replacer) Caller {
	return Caller{
		Replace: func(s string) string { return repl.ReplaceAll(s, "") },
		Scopes:  strings.Fields(repl.ReplaceAll("{"+identity.PlaceholderScopes+"}", "")),
	}
}

// record writes one audit event; status is that of a refusal, 0 when
// allowed. The path is logged: whose data was asked for is the point.
func (a *Authorize) record(r *http.Request, policy string, repl *caddy.Replacer, decision, grant string, status int) {
	clientIP, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	a.audit.Info("authorization",
		zap.String("request_id", problem.RequestID(r)),
		zap.String("decision", decision),
		zap.String("grant", grant),
		zap.String("policy", policy),
		zap.String("user_id", repl.ReplaceAll("{http.auth.user.id}", "")),
		zap.String("tenant", repl.ReplaceAll("{http.auth.user.tenant}", "")),
		zap.String("scopes", repl.ReplaceAll("{"+identity.PlaceholderScopes+"}", "")),
		zap.String("client_ip", clientIP),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.Int("status", status),
	)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Authorize)(nil)
	_ caddy.Validator             = (*Authorize)(nil)
	_ caddyhttp.MiddlewareHandler = (*Authorize)(nil)
)
