package tlsexpiry

import (
	"crypto/x509"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	expiryDesc = prometheus.NewDesc(
		"gateway_tls_certificate_expiry_timestamp_seconds",
		"When the certificate served for a host name expires (Unix time): the earliest-expiring cached certificate that matches it.",
		[]string{"name"}, nil)
	notBeforeDesc = prometheus.NewDesc(
		"gateway_tls_certificate_not_before_timestamp_seconds",
		"When that certificate became valid (Unix time); with the expiry it gives the share of its lifetime left, which alerts use because lifetimes range from hours (local CA) to months (ACME).",
		[]string{"name"}, nil)
)

// collector reads expiries at scrape time, so renewals show without delay.
type collector struct {
	names []string
	certs func(san string) []certmagic.Certificate
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expiryDesc
	ch <- notBeforeDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range c.names {
		var first *x509.Certificate
		for _, cert := range c.certs(name) {
			if cert.Leaf != nil && (first == nil || cert.Leaf.NotAfter.Before(first.NotAfter)) {
				first = cert.Leaf
			}
		}
		if first != nil {
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(first.NotAfter.Unix()), name)
			ch <- prometheus.MustNewConstMetric(notBeforeDesc, prometheus.GaugeValue, float64(first.NotBefore.Unix()), name)
		}
	}
}
