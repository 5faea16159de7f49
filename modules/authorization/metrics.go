package authorization

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lexiscore/gateway/internal/telemetry"
)

// Decision label values of gateway_authz_decisions_total.
const (
	decisionAllow = "allow"
	decisionDeny  = "deny"
)

// decisions is package-level and registered into each config load's
// registry, so counts survive reloads. Labels are bounded: policy names come
// from the config, grant is identity, scope or none.
var decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "gateway_authz_decisions_total",
	Help: "Authorization decisions per policy, for requests whose path a policy matched. decision: allow or deny; " +
		"grant: identity (a path parameter equals the caller's identity), scope (the caller holds an allowed scope), none (denied).",
}, []string{"policy", "decision", "grant"})

func registerMetrics(reg prometheus.Registerer) error {
	return telemetry.Register(reg, decisions)
}
