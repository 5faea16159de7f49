package ratelimit

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/lexiscore/gateway/internal/caddyargs"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("rate_limit", parseCaddyfile)
	// A plugin's directive can only be ordered relative to a standard one,
	// so "after authenticate" cannot be said. authenticate sits before
	// basic_auth; after forward_auth is after every authentication handler
	// (their user IDs are the keys) and before anything that spends work
	// on the request (encode, respond, reverse_proxy, file_server).
	httpcaddyfile.RegisterDirectiveOrder("rate_limit", httpcaddyfile.After, "forward_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var rl RateLimit
	err := rl.UnmarshalCaddyfile(h.Dispenser)
	return &rl, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	rate_limit [<matcher>] {
//	    key            <template>                 # default {http.auth.user.id}
//	    anonymous      deny|fallback|always       # default deny
//	    tier           <template>                 # default {http.auth.user.tier}
//	    policy <name> <limit>/<window> {          # one or more; the block is optional
//	        tier <tier> <limit>[/<window>]        # the window, if given, must be the policy's
//	        count_status <status>...              # count only requests refused with these
//	    }
//	    store [memory|<redis-url>] {              # default memory; the block is optional
//	        addrs             <host:port>...      # more nodes: cluster, or sentinels with master
//	        master            <name>              # Redis Sentinel master set
//	        username          <user>
//	        password          <password>          # default {env.REDIS_PASSWORD}
//	        sentinel_password <password>
//	        db                <n>
//	        prefix            <key prefix>        # default gateway:ratelimit
//	        breaker           <failures> <delay>  # default 5 5s
//	        pipelining        on|off              # default on
//	    }
//	    timeout        <duration>                 # default 50ms
//	    on_store_error fail_open|fail_closed      # default fail_open
//	    emergency      <limit>/<window>           # default: the first policy's rate
//	    log_denied     <limit>/<window>|off       # refusals in the access log; default 10/s
//	}
//
// Windows are s, m, h, d or a duration of whole seconds: 10/s, 100/m, 5/10s.
// The store URL and its settings may be runtime placeholders such as
// {env.REDIS_URL}; an empty URL selects the memory store.
func (h *RateLimit) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "key":
			if !d.AllArgs(&h.Key) {
				return d.ArgErr()
			}
		case "tier":
			if !d.AllArgs(&h.Tier) {
				return d.ArgErr()
			}
		case "anonymous":
			if !d.AllArgs(&h.Anonymous) {
				return d.ArgErr()
			}
			switch h.Anonymous {
			case AnonymousDeny, AnonymousFallback, AnonymousAlways:
			default:
				return d.Errf("rate_limit: anonymous %q: want deny, fallback or always", h.Anonymous)
			}
		case "policy":
			p, err := parsePolicy(d)
			if err != nil {
				return err
			}
			for _, other := range h.Policies {
				if other.Name == p.Name {
					return d.Errf("rate_limit: policy %q is defined twice", p.Name)
				}
			}
			h.Policies = append(h.Policies, p)
		case "store":
			s, err := parseStore(d)
			if err != nil {
				return err
			}
			h.Store = s
		case "timeout":
			if err := caddyargs.PositiveDuration(d, "timeout", &h.Timeout); err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "on_store_error":
			if !d.AllArgs(&h.OnStoreError) {
				return d.ArgErr()
			}
			if h.OnStoreError != FailOpen && h.OnStoreError != FailClosed {
				return d.Errf("rate_limit: on_store_error %q: want fail_open or fail_closed", h.OnStoreError)
			}
		case "emergency":
			if !d.AllArgs(&h.Emergency) {
				return d.ArgErr()
			}
			if _, err := ParseRate(h.Emergency); err != nil {
				return d.Errf("rate_limit: emergency: %v", err)
			}
		case "log_denied":
			if !d.AllArgs(&h.LogDenied) {
				return d.ArgErr()
			}
			if _, err := ParseRate(h.LogDenied); err != nil && h.LogDenied != LogDeniedOff {
				return d.Errf("rate_limit: log_denied %q: want a rate such as 10/s, or off", h.LogDenied)
			}
		default:
			return d.Errf("rate_limit: unknown subdirective %q", d.Val())
		}
	}
	return nil
}

func parsePolicy(d *caddyfile.Dispenser) (PolicyConfig, error) {
	var p PolicyConfig
	if !d.AllArgs(&p.Name, &p.Rate) {
		return p, d.ArgErr()
	}
	if err := validPolicyName(p.Name); err != nil {
		return p, d.Errf("rate_limit: %v", err)
	}
	rate, err := ParseRate(p.Rate)
	if err != nil {
		return p, d.Errf("rate_limit: policy %q: %v", p.Name, err)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() == "count_status" {
			statuses := d.RemainingArgs()
			if len(statuses) == 0 {
				return p, d.ArgErr()
			}
			for _, s := range statuses {
				n, err := strconv.Atoi(s)
				if err != nil || n < 100 || n > 599 {
					return p, d.Errf("rate_limit: policy %q: count_status %q is not an HTTP status", p.Name, s)
				}
				p.CountStatuses = append(p.CountStatuses, n)
			}
			continue
		}
		if d.Val() != "tier" {
			return p, d.Errf("rate_limit: policy %q: unknown subdirective %q", p.Name, d.Val())
		}
		var tier, limit string
		if !d.AllArgs(&tier, &limit) {
			return p, d.ArgErr()
		}
		n, err := strconv.ParseInt(limit, 10, 64)
		if err != nil {
			tr, perr := ParseRate(limit)
			if perr != nil {
				return p, d.Errf("rate_limit: policy %q: tier %q: %q is neither a limit nor a rate", p.Name, tier, limit)
			}
			if tr.Window != rate.Window {
				return p, d.Errf("rate_limit: policy %q: tier %q: rate %s must have the policy's window (%s)", p.Name, tier, limit, rate)
			}
			n = tr.Limit
		}
		if n < 1 {
			return p, d.Errf("rate_limit: policy %q: tier %q: limit %d must be positive", p.Name, tier, n)
		}
		if p.Tiers == nil {
			p.Tiers = make(map[string]int64)
		}
		p.Tiers[tier] = n
	}
	return p, nil
}

func parseStore(d *caddyfile.Dispenser) (*StoreConfig, error) {
	s := new(StoreConfig)
	if d.NextArg() {
		s.URL = d.Val()
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		switch sub {
		case "addrs":
			addrs := d.RemainingArgs()
			if len(addrs) == 0 {
				return nil, d.ArgErr()
			}
			s.Addrs = append(s.Addrs, addrs...)
		case "master":
			if !d.AllArgs(&s.MasterName) {
				return nil, d.ArgErr()
			}
		case "username":
			if !d.AllArgs(&s.Username) {
				return nil, d.ArgErr()
			}
		case "password":
			if !d.AllArgs(&s.Password) {
				return nil, d.ArgErr()
			}
		case "sentinel_password":
			if !d.AllArgs(&s.SentinelPassword) {
				return nil, d.ArgErr()
			}
		case "db":
			if err := caddyargs.IntAtLeast(d, 0, &s.DB); err != nil {
				return nil, err
			}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "prefix":
			if !d.AllArgs(&s.Prefix) {
				return nil, d.ArgErr()
			}
		case "breaker":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			if err := caddyargs.IntAtLeastArg(d, "breaker failures", 1, &s.BreakerFailures); err != nil {
				return nil, err
			}
			if err := caddyargs.PositiveDuration(d, "breaker delay", &s.BreakerDelay); err != nil {
				return nil, err
			}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "pipelining":
			var v string
			if !d.AllArgs(&v) || (v != "on" && v != "off") {
				return nil, d.Errf("rate_limit: store: pipelining %q: want on or off", v)
			}
			s.NoPipelining = v == "off"
		default:
			return nil, d.Errf("rate_limit: store: unknown subdirective %q", sub)
		}
	}
	return s, nil
}

var _ caddyfile.Unmarshaler = (*RateLimit)(nil)
