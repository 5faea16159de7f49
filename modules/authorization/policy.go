package authorization

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/lexiscore/gateway/modules/identity"
)

// Template is a path pattern: literal segments, {name} segments that
// capture one segment each, and an optional final * that matches any number
// of further segments (none included). Matching is case-sensitive and on
// whole segments, like the backend's router.
type Template struct {
	segments []string
	rest     bool
	params   []string
}

// ParseTemplate parses a template such as /v1/users/{user}/*.
func ParseTemplate(s string) (Template, error) {
	if !strings.HasPrefix(s, "/") {
		return Template{}, fmt.Errorf("path template %q does not start with /", s)
	}
	var t Template
	segs := strings.Split(s[1:], "/")
	for i, seg := range segs {
		switch {
		case seg == "*" && i == len(segs)-1:
			t.rest = true
			continue
		case seg == "" || seg == "." || seg == ".." || strings.Contains(seg, "*"):
			return Template{}, fmt.Errorf("path template %q: segment %q is empty, a dot segment or a misplaced *", s, seg)
		case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}"):
			name := seg[1 : len(seg)-1]
			if !validName(name) || slices.Contains(t.params, name) {
				return Template{}, fmt.Errorf("path template %q: parameter %q is not a unique name of letters, digits and _", s, seg)
			}
			t.params = append(t.params, name)
		case strings.ContainsAny(seg, "{}"):
			return Template{}, fmt.Errorf("path template %q: segment %q must be a literal or a whole {name}", s, seg)
		}
		t.segments = append(t.segments, seg)
	}
	return t, nil
}

// Params are the names of the template's parameters.
func (t Template) Params() []string { return t.params }

// Match reports whether a path, as split by Segments, matches, and the
// values of the parameters.
func (t Template) Match(segs []string) (map[string]string, bool) {
	if len(segs) < len(t.segments) || (!t.rest && len(segs) != len(t.segments)) {
		return nil, false
	}
	params := make(map[string]string, len(t.params))
	for i, want := range t.segments {
		if strings.HasPrefix(want, "{") {
			params[want[1:len(want)-1]] = segs[i]
			continue
		}
		if segs[i] != want {
			return nil, false
		}
	}
	return params, true
}

// errAmbiguousPath is a path that routers may split differently.
var errAmbiguousPath = errors.New("an encoded slash or NUL, or a bad escape, in the path")

// Segments decodes an escaped path into segments and resolves the empty,
// "." and ".." ones, decoded ones too (%2e%2e), as a router that cleans
// paths sees them. An encoded slash is refused: one router keeps it inside
// its segment, another splits there, and a policy must see the path the
// backend routes.
func Segments(escapedPath string) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(escapedPath, "/") {
		seg, err := url.PathUnescape(raw)
		if err != nil || strings.ContainsAny(seg, "/\x00") {
			return nil, errAmbiguousPath
		}
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	return out, nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Grant kinds: the label values of gateway_authz_decisions_total{grant}.
const (
	grantIdentity = "identity" // a path parameter equals an attribute of the caller
	grantScope    = "scope"    // the caller holds one of the scopes
	grantNone     = "none"     // refused
)

// Grant is one way to be allowed by a policy: either Param equals Equals
// (after placeholders are replaced), or the caller holds one of Scopes.
type Grant struct {
	// Param names a parameter of the policy's path template.
	Param string `json:"param,omitempty"`
	// Equals is what the parameter must equal, typically a placeholder of
	// the caller's identity such as {http.auth.user.id}. An empty value
	// (an anonymous caller) never matches.
	Equals string `json:"equals,omitempty"`
	// Scopes are scopes any one of which allows the request.
	Scopes []string `json:"scopes,omitempty"`
}

func (g Grant) check(tmpl Template) error {
	switch {
	case g.Param != "" && len(g.Scopes) > 0, g.Param == "" && len(g.Scopes) == 0:
		return errors.New("a grant is either {param} == <value> or scope <scope>...")
	case g.Param != "" && !slices.Contains(tmpl.Params(), g.Param):
		return fmt.Errorf("{%s} is not a parameter of the path template", g.Param)
	case g.Param != "" && g.Equals == "":
		return fmt.Errorf("{%s} is compared with nothing", g.Param)
	}
	for _, s := range g.Scopes {
		if !identity.ValidScope(s) {
			return fmt.Errorf("scope %q is not an RFC 6749 scope token", s)
		}
	}
	return nil
}

// Caller is what a decision knows about who is asking.
type Caller struct {
	// Replace expands placeholders (Caddy's replacer).
	Replace func(string) string
	// Scopes are the caller's scopes.
	Scopes []string
}

// allows returns the kind of the first grant that allows the request with
// params, or "" when none does.
func allows(grants []Grant, params map[string]string, c Caller) string {
	for _, g := range grants {
		if g.Param != "" {
			if v := c.Replace(g.Equals); v != "" && params[g.Param] == v {
				return grantIdentity
			}
			continue
		}
		for _, s := range g.Scopes {
			if slices.Contains(c.Scopes, s) {
				return grantScope
			}
		}
	}
	return ""
}
