package framing

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lexiscore/gateway/internal/telemetry"
)

var refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "gateway_framing_refusals_total",
	Help: "HTTP/1.x requests refused for their framing, by reason: cl_te (Content-Length with Transfer-Encoding), te_http10 (Transfer-Encoding before HTTP/1.1), bare_cr, head_too_large.",
}, []string{"reason"})

func registerMetrics(reg prometheus.Registerer) error {
	return telemetry.Register(reg, refusals)
}
