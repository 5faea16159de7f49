package ratelimit

import (
	"net/http"
	"strconv"

	"github.com/dunglas/httpsfv"
)

// Header names, in the canonical form net/http would give them, so that
// setting them does not canonicalize (and allocate) on every response.
const (
	headerPolicy    = "Ratelimit-Policy"
	headerRateLimit = "Ratelimit"
	headerLimit     = "X-Ratelimit-Limit"
	headerRemaining = "X-Ratelimit-Remaining"
	headerReset     = "X-Ratelimit-Reset"
)

// PolicyField formats the RateLimit-Policy field of states: one item per
// policy, named by a string, with q the quota and w the window in seconds.
// It depends only on the configuration and the tier, so the Limiter
// formats it once per tier.
func PolicyField(states []State) string {
	list := make(httpsfv.List, 0, len(states))
	for _, s := range states {
		p := httpsfv.NewParams()
		p.Add("q", s.Limit)
		p.Add("w", s.Window)
		list = append(list, httpsfv.Item{Value: s.Policy, Params: p})
	}
	v, err := httpsfv.Marshal(list)
	if err != nil {
		return "" // unreachable: policy names are validated printable ASCII
	}
	return v
}

// SetHeaders writes the rate-limit fields of d into h:
//
//   - RateLimit-Policy and RateLimit, structured fields as in
//     draft-ietf-httpapi-ratelimit-headers (-09 and later), e.g.
//     `"burst";q=10;w=1, "sustained";q=100;w=60` and
//     `"burst";r=3;t=1, "sustained";r=57;t=42`: r is the requests
//     remaining, t the seconds until the window ends.
//   - X-RateLimit-Limit, -Remaining and -Reset for the most restrictive
//     policy (see tighter). Reset is in seconds from now, like t and
//     Retry-After, not a Unix time: it does not depend on clocks agreeing.
//
// A policy the store could not count appears only in RateLimit-Policy.
func SetHeaders(h http.Header, d Decision) {
	if len(d.States) == 0 {
		return
	}
	policy := d.PolicyField
	if policy == "" {
		policy = PolicyField(d.States)
	}
	// The five values share one backing array and one string, sliced
	// apart: two allocations per response instead of a dozen.
	values := make([]string, 5)
	values[0] = policy
	h[headerPolicy] = values[0:1:1]

	buf := make([]byte, 0, 32*len(d.States)+48)
	var tightest *State
	for i := range d.States {
		s := &d.States[i]
		if !s.Known {
			continue
		}
		if tightest != nil {
			buf = append(buf, ", "...)
		}
		// A policy name is [a-z0-9_.-] (validPolicyName), so quoting it
		// is its structured-field string serialization.
		buf = append(buf, '"')
		buf = append(buf, s.Policy...)
		buf = append(buf, `";r=`...)
		buf = strconv.AppendInt(buf, s.Remaining, 10)
		buf = append(buf, ";t="...)
		buf = strconv.AppendInt(buf, s.Reset, 10)
		if tightest == nil || tighter(s, tightest) {
			tightest = s
		}
	}
	if tightest == nil {
		return
	}
	var ends [4]int
	ends[0] = len(buf)
	buf = strconv.AppendInt(buf, tightest.Limit, 10)
	ends[1] = len(buf)
	buf = strconv.AppendInt(buf, tightest.Remaining, 10)
	ends[2] = len(buf)
	buf = strconv.AppendInt(buf, tightest.Reset, 10)
	ends[3] = len(buf)
	all := string(buf)
	for i, key := range [4]string{headerRateLimit, headerLimit, headerRemaining, headerReset} {
		from := 0
		if i > 0 {
			from = ends[i-1]
		}
		values[i+1] = all[from:ends[i]]
		h[key] = values[i+1 : i+2 : i+2]
	}
}

// tighter reports whether a restricts the client more than b: a policy
// over its limit before one under it, then the one refusing longer; among
// policies under their limits, the one with fewer requests left, then the
// one that resets later.
func tighter(a, b *State) bool {
	if a.Reached != b.Reached {
		return a.Reached
	}
	if !a.Reached && a.Remaining != b.Remaining {
		return a.Remaining < b.Remaining
	}
	return a.Reset > b.Reset
}
