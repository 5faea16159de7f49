package ratelimit

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Decision label values of gateway_ratelimit_decisions_total.
const (
	decisionAllowed    = "allowed"
	decisionDenied     = "denied"
	decisionFailOpen   = "fail_open"
	decisionFailClosed = "fail_closed"
)

// Package-level collectors, registered into each config load's registry at
// Provision (internal/telemetry), so counts survive reloads. Labels are
// bounded: policy names come from the config, store is "memory" or "redis".
var (
	decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_ratelimit_decisions_total",
		Help: "Rate-limit decisions per policy. decision: allowed, denied (over the limit), fail_open " +
			"(store unavailable, left to the in-process emergency policy), fail_closed (store unavailable, refused with 503).",
	}, []string{"policy", "decision"})

	storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_ratelimit_store_errors_total",
		Help: "Rate-limit store calls that failed or timed out; one call counts every policy of a request. Calls refused by the open circuit breaker are not calls and are not counted.",
	}, []string{"store"})

	storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gateway_ratelimit_store_duration_seconds",
		Help:    "Duration of rate-limit store calls (one per request, every policy of it), failed ones included.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	}, []string{"store"})

	denialsUnlogged = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gateway_ratelimit_denials_unlogged_total",
		Help: "Requests refused with 429 that were kept out of the access log (over the handler's log_denied rate); all are counted in gateway_ratelimit_decisions_total.",
	})

	breakerState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gateway_ratelimit_store_breaker_state",
		Help: "1 for the current state (closed, open, half-open) of the circuit breaker around a rate-limit store, 0 for the others.",
	}, []string{"store", "state"})
)

func collectors() []prometheus.Collector {
	return []prometheus.Collector{decisions, storeErrors, storeDuration, denialsUnlogged, breakerState}
}

// policyCounters are one policy's decision counters, resolved once so that
// a request does no label lookups.
type policyCounters struct {
	allowed, denied, failOpen, failClosed prometheus.Counter
}

func countersFor(policy string) policyCounters {
	return policyCounters{
		allowed:    decisions.WithLabelValues(policy, decisionAllowed),
		denied:     decisions.WithLabelValues(policy, decisionDenied),
		failOpen:   decisions.WithLabelValues(policy, decisionFailOpen),
		failClosed: decisions.WithLabelValues(policy, decisionFailClosed),
	}
}

func (c policyCounters) verdict(reached bool) {
	if reached {
		c.denied.Inc()
		return
	}
	c.allowed.Inc()
}
