package resilience

import (
	"strconv"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/prometheus/client_golang/prometheus"
)

// Label values are bounded: upstream is a configured dial address, route a
// configured route name, and every other label takes one of the values
// listed in its help text.
var (
	breakerTransitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_circuit_breaker_transitions_total",
		Help: "Circuit breaker state changes per upstream; from and to are closed, open or half-open.",
	}, []string{"upstream", "from", "to"})

	upstreamRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_upstream_requests_total",
		Help: "Attempts sent to an upstream by the resilient transport. code_class: 1xx..5xx for answers, " +
			"error for transport failures, timeout for attempts cut by a deadline, canceled for attempts abandoned because the client left or a hedge won, " +
			"open for attempts refused by the circuit breaker.",
	}, []string{"upstream", "code_class"})

	upstreamDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gateway_upstream_duration_seconds",
		Help:    "Time from sending an attempt to an upstream to its response headers (or failure).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"upstream"})

	retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_retries_total",
		Help: "Extra attempts made by the resilience handler per route. reason: status (a retryable upstream status), " +
			"timeout (attempt timeout), transport (connection failed mid-request), hedge (hedged request).",
	}, []string{"route", "reason"})

	retryBudgetExhausted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_retry_budget_exhausted_total",
		Help: "Retries or hedges not made because the route's retry budget was used up.",
	}, []string{"route"})

	fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_fallbacks_total",
		Help: "Failed requests answered by a fallback. kind: upstream (secondary upstream), stale (last good response), static (configured degraded answer).",
	}, []string{"route", "kind"})

	panicRouting = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_upstream_panic_routing_total",
		Help: "Upstream choices made while every upstream of the route had failed its active health checks: " +
			"the request was sent to one of them anyway (panic routing). route is empty outside a resilience handler.",
	}, []string{"route"})

	concurrencyRejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_concurrency_rejections_total",
		Help: "Requests refused with 503 before reaching an upstream. reason: bulkhead (full after the queue wait), " +
			"limit (adaptive limit reached), degraded (route shed in degraded mode).",
	}, []string{"route", "reason"})

	breakerStateDesc = prometheus.NewDesc("gateway_circuit_breaker_state",
		"1 for the current state of the upstream's circuit breaker (closed, open, half-open), 0 for the others. "+
			"An open breaker whose delay has passed reports half-open: its next attempt is a probe.",
		[]string{"upstream", "state"}, nil)
	concurrencyLimitDesc = prometheus.NewDesc("gateway_concurrency_limit",
		"Concurrency limit of the route: the bulkhead size, or the adaptive limiter's current limit.",
		[]string{"route"}, nil)
	concurrencyInFlightDesc = prometheus.NewDesc("gateway_concurrency_in_flight",
		"Requests of the route holding a concurrency permit now.",
		[]string{"route"}, nil)

	degradedGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gateway_degraded_mode",
		Help: "1 while the gateway is in degraded mode (switched on by an operator, or all breakers of a degrade_when_all_open transport open).",
	}, func() float64 {
		if degraded.active() {
			return 1
		}
		return 0
	})
)

// stateCollector reports the state of live breakers at scrape time, so that
// breakers dropped by a reload leave no stale series behind.
type stateCollector struct{}

func (stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- breakerStateDesc }

func (stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range registry.current() {
		current := b.cb.State()
		if current == circuitbreaker.OpenState && b.cb.RemainingDelay() == 0 {
			current = circuitbreaker.HalfOpenState
		}
		for _, s := range stateNames {
			v := 0.0
			if s == current {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, v, b.upstream, s.String())
		}
	}
}

// concurrencyCollector reports the limit and in-flight count of every
// route's limiter at scrape time.
type concurrencyCollector struct{}

func (concurrencyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- concurrencyLimitDesc
	ch <- concurrencyInFlightDesc
}

func (concurrencyCollector) Collect(ch chan<- prometheus.Metric) {
	for route, l := range routes.limiters() {
		ch <- prometheus.MustNewConstMetric(concurrencyLimitDesc, prometheus.GaugeValue, float64(l.limit()), route)
		ch <- prometheus.MustNewConstMetric(concurrencyInFlightDesc, prometheus.GaugeValue, float64(l.inFlight()), route)
	}
}

func collectors() []prometheus.Collector {
	return []prometheus.Collector{
		breakerTransitions, upstreamRequests, upstreamDuration, retries, retryBudgetExhausted,
		fallbacks, panicRouting, concurrencyRejections, degradedGauge, stateCollector{}, concurrencyCollector{},
	}
}

// precreateMetrics makes the route's counters exist at 0 from the first
// scrape, for the features it has, so that panels and alerts read 0 instead
// of "No data" until the first retry, fallback or rejection.
func (h *Handler) precreateMetrics() {
	// Whether the route's proxy routes in panic depends on its lb_policy,
	// which the handler cannot see.
	panicRouting.WithLabelValues(h.Route)
	if h.Retry != nil {
		for _, k := range []kind{kindStatus, kindTimeout, kindTransport} {
			retries.WithLabelValues(h.Route, k.reason())
		}
		retryBudgetExhausted.WithLabelValues(h.Route)
	}
	if h.Hedge != nil {
		retries.WithLabelValues(h.Route, "hedge")
	}
	if fb := h.Fallback; fb != nil {
		for name, on := range map[string]bool{"upstream": h.secondary != nil, "stale": fb.Stale != nil, "static": fb.Static != nil} {
			if on {
				fallbacks.WithLabelValues(h.Route, name)
			}
		}
	}
	for reason, on := range map[string]bool{"bulkhead": h.Bulkhead != nil, "limit": h.AdaptiveLimit != nil, "degraded": h.ShedWhenDegraded} {
		if on {
			concurrencyRejections.WithLabelValues(h.Route, reason)
		}
	}
}

// codeClasses are the values of code_class.
var codeClasses = []string{"1xx", "2xx", "3xx", "4xx", "5xx", "error", "timeout", "canceled", "open"}

// codeClass is the code_class label of an upstream status.
func codeClass(status int) string {
	if status < 100 || status > 599 {
		return "error"
	}
	return strconv.Itoa(status/100) + "xx"
}
