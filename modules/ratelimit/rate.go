package ratelimit

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ulule/limiter/v3"
)

// Rate is a quota of requests per fixed window.
type Rate struct {
	Limit  int64
	Window time.Duration
}

// windowUnits are the single-letter windows of ParseRate.
var windowUnits = map[string]time.Duration{
	"s": time.Second,
	"m": time.Minute,
	"h": time.Hour,
	"d": 24 * time.Hour,
}

// ParseRate reads "<limit>/<window>", where the window is a unit (s, m, h, d)
// or a Go duration of whole seconds: "10/s", "100/m", "5/10s", "90/1m30s".
// Whole seconds, because the RateLimit-Policy header states windows in
// seconds and a window the header cannot state would mislead clients.
func ParseRate(s string) (Rate, error) {
	limit, window, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want <limit>/<window>, e.g. 10/s or 100/m", s)
	}
	n, err := strconv.ParseInt(limit, 10, 64)
	if err != nil || n < 1 {
		return Rate{}, fmt.Errorf("rate %q: the limit must be a positive integer", s)
	}
	w, ok := windowUnits[window]
	if !ok {
		if w, err = time.ParseDuration(window); err != nil {
			return Rate{}, fmt.Errorf("rate %q: window: %w", s, err)
		}
	}
	if w < time.Second || w%time.Second != 0 {
		return Rate{}, fmt.Errorf("rate %q: the window must be a whole number of seconds", s)
	}
	return Rate{Limit: n, Window: w}, nil
}

// String formats r the way ParseRate reads it.
func (r Rate) String() string {
	for _, u := range []string{"d", "h", "m", "s"} {
		if r.Window == windowUnits[u] {
			return fmt.Sprintf("%d/%s", r.Limit, u)
		}
	}
	return fmt.Sprintf("%d/%s", r.Limit, r.Window)
}

// seconds is the window in whole seconds.
func (r Rate) seconds() int64 { return int64(r.Window / time.Second) }

// limiterRate leaves Formatted empty: no store reads it, and formatting
// it on every call would cost an allocation per policy per request.
func (r Rate) limiterRate() limiter.Rate {
	return limiter.Rate{Period: r.Window, Limit: r.Limit}
}

// Policy is one named limit. Tiers replace the limit for some user tiers;
// the window is the policy's for every tier, so a user whose tier changes
// keeps counting in the same window.
type Policy struct {
	// Name identifies the policy in headers, metrics and store keys. Policies
	// with the same name share their counters, across handlers too.
	Name string
	// Rate applies to users whose tier has no entry in Tiers.
	Rate Rate
	// Tiers maps a tier (e.g. "pro") to its limit per Rate.Window.
	Tiers map[string]int64
	// CountStatuses, when set, makes the policy count only requests that
	// the rest of the route refuses with one of these statuses (e.g. 401
	// from authenticate): Decide only reads its count, refusing a key that
	// is at its limit before any work is spent on the request, and
	// CountAfter adds the hit once the status is known.
	CountStatuses []int
}

// RateFor returns the rate that applies to users of tier.
func (p Policy) RateFor(tier string) Rate {
	if n, ok := p.Tiers[tier]; ok {
		return Rate{Limit: n, Window: p.Rate.Window}
	}
	return p.Rate
}

// EmergencyPolicy names the in-process limit that decides while the store is
// unavailable and the handler fails open.
const EmergencyPolicy = "emergency"

// policyName is what a policy may be called: it appears as a header
// string, a metric label and part of a store key.
var policyName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// validPolicyName reports why name cannot name a policy, or nil.
func validPolicyName(name string) error {
	if !policyName.MatchString(name) {
		return fmt.Errorf("policy name %q: want 1-64 of [a-z0-9_.-], starting with a letter or digit", name)
	}
	if name == EmergencyPolicy {
		return fmt.Errorf("policy name %q is reserved for the fail-open limit", name)
	}
	return nil
}
