package resilience

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/lexiscore/gateway/internal/caddyargs"
	"github.com/lexiscore/gateway/internal/proxytransport"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("resilience", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("resilience", httpcaddyfile.Before, "reverse_proxy")
	httpcaddyfile.RegisterHandlerDirective("upstreams_ready", parseReadiness)
	httpcaddyfile.RegisterDirectiveOrder("upstreams_ready", httpcaddyfile.Before, "respond")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m Handler
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if fb := m.Fallback; fb != nil && fb.secondary != nil {
		// As reverse_proxy's own parser does: handle_response blocks need
		// the helper.
		if err := fb.secondary.FinalizeUnmarshalCaddyfile(h); err != nil {
			return nil, err
		}
		m.SecondaryRaw = caddyconfig.JSONModuleObject(fb.secondary, "handler", "reverse_proxy", nil)
	}
	return &m, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	resilience [<matcher>] <route> {
//	    timeout         <duration>
//	    attempt_timeout <duration>
//	    retry [<max_attempts>] {
//	        max_attempts    <n>
//	        backoff         <first> [<max>]
//	        jitter          <fraction>
//	        statuses        <code...>
//	        retry_after_cap <duration>
//	        budget          <fraction> [<min_concurrency>]
//	        max_body        <size>
//	    }
//	    bulkhead <max_in_flight> [<max_wait>]
//	    adaptive_limit {
//	        min      <n>
//	        max      <n>
//	        initial  <n>
//	        max_wait <duration>
//	    }
//	    hedge <delay>|p<quantile>|off [<max_hedges>]
//	    fallback {
//	        upstream <addresses...> {
//	            # reverse_proxy's options, e.g.
//	            transport resilient {
//	                transport signed { … }
//	            }
//	        }
//	        stale [<max_age>] {
//	            max_entries <n>
//	            max_body    <size>
//	            vary        <header...>
//	        }
//	        static <status> <body> [<content_type>]
//	    }
//	    shed_when_degraded
//	    retry_after <duration>
//	    max_failure_body <size>
//	}
//
// Use one resilience directive per route, with matchers that do not
// overlap: two handlers on one request would both retry.
//
// The fallback upstream's block is a reverse_proxy block (its arguments
// the upstreams), so its transport can sign requests as the main
// reverse_proxy's does. Its transport is wrapped in a resilient one, with
// default breaker settings, unless it is resilient itself.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if !d.NextArg() {
		return d.Errf("resilience: a route name is required")
	}
	h.Route = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "timeout":
			err = caddyargs.Duration(d, &h.Timeout)
		case "attempt_timeout":
			err = caddyargs.Duration(d, &h.AttemptTimeout)
		case "retry":
			h.Retry = new(RetryConfig)
			err = h.Retry.unmarshal(d)
		case "bulkhead":
			h.Bulkhead = new(BulkheadConfig)
			err = h.Bulkhead.unmarshal(d)
		case "adaptive_limit":
			h.AdaptiveLimit = new(AdaptiveLimitConfig)
			err = h.AdaptiveLimit.unmarshal(d)
		case "hedge":
			h.Hedge = new(HedgeConfig)
			err = h.Hedge.unmarshal(d)
		case "fallback":
			h.Fallback = new(FallbackConfig)
			if err = h.Fallback.unmarshal(d); err == nil && h.Fallback.secondary != nil {
				h.SecondaryRaw = caddyconfig.JSONModuleObject(h.Fallback.secondary, "handler", "reverse_proxy", nil)
			}
		case "shed_when_degraded":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.ShedWhenDegraded = true
		case "retry_after":
			err = caddyargs.Duration(d, &h.RetryAfter)
		case "max_failure_body":
			err = caddyargs.Size(d, &h.MaxFailureBody)
		default:
			return d.Errf("resilience: unknown subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (rc *RetryConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		if err := caddyargs.IntArg(d, "retry", &rc.MaxAttempts); err != nil {
			return err
		}
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "max_attempts":
			err = caddyargs.Int(d, &rc.MaxAttempts)
		case "backoff":
			if err = caddyargs.Duration(d, &rc.Backoff); err == nil && d.NextArg() {
				err = caddyargs.DurationArg(d, "backoff", &rc.MaxBackoff)
			}
		case "jitter":
			err = caddyargs.Float(d, &rc.Jitter)
		case "statuses":
			rc.Statuses = nil
			for d.NextArg() {
				var code int
				if err = caddyargs.IntArg(d, "statuses", &code); err != nil {
					return err
				}
				rc.Statuses = append(rc.Statuses, code)
			}
			if len(rc.Statuses) == 0 {
				return d.ArgErr()
			}
		case "retry_after_cap":
			err = caddyargs.Duration(d, &rc.RetryAfterCap)
		case "budget":
			if err = caddyargs.Float(d, &rc.Budget); err == nil && d.NextArg() {
				var n int
				if err = caddyargs.IntArg(d, "budget", &n); err == nil {
					rc.BudgetMinConcurrency = uint(max(n, 0))
				}
			}
		case "max_body":
			err = caddyargs.Size(d, &rc.MaxBody)
		default:
			return d.Errf("resilience: unknown retry option %q", d.Val())
		}
		if err != nil {
			return err
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

func (bc *BulkheadConfig) unmarshal(d *caddyfile.Dispenser) error {
	var n int
	if err := caddyargs.Int(d, &n); err != nil {
		return err
	}
	if n < 1 {
		return d.Errf("resilience: bulkhead max_in_flight %d must be at least 1", n)
	}
	bc.MaxInFlight = uint(n)
	if d.NextArg() {
		if err := caddyargs.DurationArg(d, "bulkhead", &bc.MaxWait); err != nil {
			return err
		}
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func (al *AdaptiveLimitConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var n int
		var err error
		switch opt := d.Val(); opt {
		case "min", "max", "initial":
			if err = caddyargs.Int(d, &n); err == nil && n < 1 {
				err = d.Errf("resilience: adaptive_limit %s %d must be at least 1", opt, n)
			}
			switch opt {
			case "min":
				al.Min = uint(n)
			case "max":
				al.Max = uint(n)
			default:
				al.Initial = uint(n)
			}
		case "max_wait":
			err = caddyargs.Duration(d, &al.MaxWait)
		default:
			return d.Errf("resilience: unknown adaptive_limit option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (hc *HedgeConfig) unmarshal(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	switch v := d.Val(); {
	case v == "off" || v == "0":
	case strings.HasPrefix(v, "p"):
		q, err := strconv.ParseFloat(v[1:], 64)
		if err != nil || q <= 0 || q >= 100 {
			return d.Errf("resilience: hedge quantile %q: want p1..p99, e.g. p95", v)
		}
		hc.Quantile = q / 100
	default:
		if err := caddyargs.DurationArg(d, "hedge", &hc.Delay); err != nil {
			return err
		}
	}
	if d.NextArg() {
		if err := caddyargs.IntArg(d, "hedge", &hc.MaxHedges); err != nil {
			return err
		}
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func (fb *FallbackConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "upstream":
			if fb.secondary != nil {
				return d.Err("resilience: only one fallback upstream is allowed")
			}
			if err := fb.unmarshalSecondary(d.NewFromNextSegment()); err != nil {
				return err
			}
		case "stale":
			fb.Stale = new(StaleConfig)
			if err := fb.Stale.unmarshal(d); err != nil {
				return err
			}
		case "static":
			args := d.RemainingArgs()
			if len(args) < 2 || len(args) > 3 {
				return d.ArgErr()
			}
			status, err := strconv.Atoi(args[0])
			if err != nil {
				return d.Errf("resilience: fallback static status %q: %v", args[0], err)
			}
			fb.Static = &StaticConfig{Status: status, Body: args[1]}
			if len(args) == 3 {
				fb.Static.ContentType = args[2]
			}
		default:
			return d.Errf("resilience: unknown fallback %q", d.Val())
		}
	}
	return nil
}

// unmarshalSecondary parses "upstream <addresses...> { … }" as a
// reverse_proxy directive, whose transport it wraps in a resilient one
// unless it is one: the secondary upstream gets breakers like the primary.
func (fb *FallbackConfig) unmarshalSecondary(d *caddyfile.Dispenser) error {
	rp := new(reverseproxy.Handler)
	if err := rp.UnmarshalCaddyfile(d); err != nil {
		return err
	}
	if len(rp.Upstreams) == 0 && rp.DynamicUpstreamsRaw == nil {
		return d.Errf("resilience: fallback upstream needs at least one address")
	}
	var inner struct {
		Protocol string `json:"protocol"`
	}
	if rp.TransportRaw != nil {
		if err := json.Unmarshal(rp.TransportRaw, &inner); err != nil {
			return d.Errf("resilience: fallback upstream transport: %v", err)
		}
	}
	if inner.Protocol != "resilient" {
		t := &Transport{Wrapper: proxytransport.Wrapper{TransportRaw: rp.TransportRaw}}
		rp.TransportRaw = caddyconfig.JSONModuleObject(t, "protocol", "resilient", nil)
	}
	fb.secondary = rp
	return nil
}

func (sc *StaleConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		if err := caddyargs.DurationArg(d, "stale", &sc.MaxAge); err != nil {
			return err
		}
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "max_entries":
			err = caddyargs.Int(d, &sc.MaxEntries)
		case "max_body":
			var n int64
			if err = caddyargs.Size(d, &n); err == nil {
				sc.MaxBody = int(n)
			}
		case "vary":
			sc.Vary = d.RemainingArgs()
			if len(sc.Vary) == 0 {
				return d.ArgErr()
			}
		default:
			return d.Errf("resilience: unknown stale option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the transport from Caddyfile tokens. Syntax:
//
//	transport resilient {
//	    breaker {
//	        failure_ratio    <fraction>
//	        min_requests     <n>
//	        window           <duration>
//	        open_delay       <duration>
//	        half_open_probes <n>
//	    }
//	    degrade_when_all_open
//	    transport <name> {
//	        # the wrapped transport's options; default: http
//	    }
//	}
func (t *Transport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // transport name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "breaker":
			if err := t.Breaker.unmarshal(d); err != nil {
				return err
			}
		case "degrade_when_all_open":
			if d.NextArg() {
				return d.ArgErr()
			}
			t.DegradeWhenAllOpen = true
		case "transport":
			if err := t.UnmarshalInner(d); err != nil {
				return err
			}
		default:
			return d.Errf("transport resilient: unknown subdirective %q", d.Val())
		}
	}
	return nil
}

func (c *BreakerConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var n int
		var err error
		switch opt := d.Val(); opt {
		case "failure_ratio":
			err = caddyargs.Float(d, &c.FailureRatio)
		case "min_requests", "half_open_probes":
			if err = caddyargs.Int(d, &n); err == nil && n < 1 {
				err = d.Errf("transport resilient: breaker %s %d must be at least 1", opt, n)
			}
			if opt == "min_requests" {
				c.MinRequests = uint(n)
			} else {
				c.HalfOpenProbes = uint(n)
			}
		case "window":
			err = caddyargs.Duration(d, &c.Window)
		case "open_delay":
			err = caddyargs.Duration(d, &c.OpenDelay)
		default:
			return d.Errf("transport resilient: unknown breaker option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the selection policy. Syntax:
//
//	lb_policy resilient {
//	    fallback <policy> [<args...>]
//	}
func (s *Selection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // policy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if d.Val() != "fallback" {
			return d.Errf("lb_policy resilient: unknown subdirective %q", d.Val())
		}
		_, raw, err := caddyargs.Module(d, "http.reverse_proxy.selection_policies", "policy")
		if err != nil {
			return err
		}
		s.FallbackRaw = raw
	}
	return nil
}

// parseReadiness reads `upstreams_ready`, which takes no arguments.
func parseReadiness(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	if err := caddyargs.NoArgs(h.Dispenser); err != nil {
		return nil, err
	}
	return new(Readiness), nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*Transport)(nil)
	_ caddyfile.Unmarshaler = (*Selection)(nil)
)
