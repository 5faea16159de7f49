package signing

import "github.com/prometheus/client_golang/prometheus"

var (
	// signed counts signed attempts by key, so a rotation can be watched:
	// the old key_id's rate falls to zero once every instance has reloaded.
	// key_id values come from the config, so the label is bounded.
	signed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_signed_requests_total",
		Help: "Upstream attempts signed, by signing key ID.",
	}, []string{"key_id"})

	// failures counts attempts that could not be signed and so were not
	// sent: body_too_large (over max_body), body_error (the body could not
	// be read or spooled), sign (the signature could not be built).
	failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_signing_failures_total",
		Help: "Upstream attempts not sent because they could not be signed, by reason.",
	}, []string{"reason"})
)
