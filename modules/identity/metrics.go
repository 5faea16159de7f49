package identity

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lexiscore/gateway/internal/telemetry"
)

// Package-level collectors keep counting across config reloads; each load
// registers them into its own registry (telemetry.Register).
var (
	authRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_auth_requests_total",
		Help: "Authentication decisions by provider (jwt, api_key, none) and result (success or the reason of a refusal).",
	}, []string{"provider", "result"})

	jwksRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_jwks_refresh_total",
		Help: "Fetches of the JWT provider's JWK Set by result (success, failure).",
	}, []string{"result"})

	apiKeyReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_api_keys_reload_total",
		Help: "Reloads of the API keys file after it changed, by result (success, failure).",
	}, []string{"result"})

	tokenCacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_auth_token_cache_total",
		Help: "Lookups of bearer tokens in the JWT provider's cache of verified tokens by result (hit, miss); a miss verifies the token in full.",
	}, []string{"result"})
	// Resolved once: a lookup is on every request's path.
	tokenCacheHits   = tokenCacheLookups.WithLabelValues("hit")
	tokenCacheMisses = tokenCacheLookups.WithLabelValues("miss")
)

func registerMetrics(reg prometheus.Registerer) error {
	return telemetry.Register(reg, authRequests, jwksRefreshes, apiKeyReloads, tokenCacheLookups)
}

// Results of a background refresh.
const (
	resultSuccess = "success"
	resultFailure = "failure"
)

// resultLabel names a background refresh outcome.
func resultLabel(err error) string {
	if err != nil {
		return resultFailure
	}
	return resultSuccess
}

// precreateJWKSMetrics makes both refresh results exist at 0, so that the
// JWKS panel reads 0 rather than "No data" before the first refresh, or
// when no JWKS is configured (nothing fetched is 0 fetches).
func precreateJWKSMetrics() {
	jwksRefreshes.WithLabelValues(resultSuccess)
	jwksRefreshes.WithLabelValues(resultFailure)
}
