// Package redact masks credentials in access logs: the query_secrets log
// field filter replaces the value of every query parameter whose name looks
// like a credential. Caddy's own query filter names parameters one by one,
// so a credential under a name nobody listed (token, apikey, X-Amz-Signature,
// ...) would reach the log in clear; this one matches names by what they
// contain, and masks too much rather than too little. The redact log
// encoder applies such filters while encoding (encoder.go).
package redact

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(QuerySecrets{})
}

// DefaultNames are the name fragments that mark a query parameter as a
// credential. A fragment matches anywhere in the name, ignoring case and
// the separators - _ and . : "key" masks api_key, apiKey and X-Api-Key.
var DefaultNames = []string{
	"token", "key", "password", "passwd", "pwd", "secret", "signature", "sig",
	"auth", "code", "credential", "session", "jwt", "bearer", "otp", "ticket",
}

// DefaultReplacement is what a masked value becomes.
const DefaultReplacement = "REDACTED"

// QuerySecrets masks credential-like query parameters of a URL or
// request-target log field, e.g. request>uri. Parameters are re-encoded in
// name order, as Caddy's query filter does. A field that does not parse as
// a URL is replaced whole: it may hold a credential that cannot be found.
type QuerySecrets struct {
	// Names are more fragments, added to DefaultNames, that mark a
	// parameter as a credential.
	Names []string `json:"names,omitempty"`
	// Replacement is the masked value. Default: REDACTED.
	Replacement string `json:"replacement,omitempty"`

	needles []string
}

// CaddyModule returns the Caddy module information.
func (QuerySecrets) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.filter.query_secrets",
		New: func() caddy.Module { return new(QuerySecrets) },
	}
}

// Provision merges the configured names into the defaults.
func (f *QuerySecrets) Provision(caddy.Context) error {
	if f.Replacement == "" {
		f.Replacement = DefaultReplacement
	}
	f.needles = f.needles[:0]
	for _, n := range append(append([]string(nil), DefaultNames...), f.Names...) {
		f.needles = append(f.needles, normalize(n))
	}
	return nil
}

// Validate refuses a name fragment that would match every parameter.
func (f *QuerySecrets) Validate() error {
	for _, n := range f.Names {
		if normalize(n) == "" {
			return fmt.Errorf("query_secrets: name %q: empty once separators are removed", n)
		}
	}
	return nil
}

// Filter masks the credential-like parameters of a string field; fields of
// other types pass unchanged.
func (f *QuerySecrets) Filter(in zapcore.Field) zapcore.Field {
	if in.Type == zapcore.StringType {
		in.String = f.mask(in.String)
	}
	return in
}

func (f *QuerySecrets) mask(s string) string {
	i := strings.IndexByte(s, '?')
	if i < 0 {
		return s
	}
	query := s[i+1:]
	values, err := url.ParseQuery(query)
	if err != nil {
		// ParseQuery skips what it cannot read: a credential may hide there.
		return s[:i+1] + f.Replacement
	}
	masked := false
	for name, vs := range values {
		if !f.secret(name) {
			continue
		}
		for j := range vs {
			vs[j] = f.Replacement
		}
		masked = true
	}
	if !masked {
		return s
	}
	return s[:i+1] + values.Encode()
}

func (f *QuerySecrets) secret(name string) bool {
	n := normalize(name)
	for _, needle := range f.needles {
		if strings.Contains(n, needle) {
			return true
		}
	}
	return false
}

// normalize lower-cases a name and drops the separators - _ and .
func normalize(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', '_', '.':
			return -1
		}
		return r
	}, strings.ToLower(s))
}

// Interface guards
var (
	_ caddy.Provisioner      = (*QuerySecrets)(nil)
	_ caddy.Validator        = (*QuerySecrets)(nil)
	_ logging.LogFieldFilter = (*QuerySecrets)(nil)
)
