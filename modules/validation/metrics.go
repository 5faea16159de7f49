package validation

import "github.com/prometheus/client_golang/prometheus"

// failures counts refused requests. Both labels are bounded: route is an
// operationId of the document (or "unknown", or a path template for 405s),
// reason one of the Reason constants.
var failures = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "gateway_validation_failures_total",
	Help: "Requests refused because they break the OpenAPI contract, by operation and reason.",
}, []string{"route", "reason"})
