package tlsexpiry

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestCollectorReportsEarliestExpiryPerName(t *testing.T) {
	soon, later := time.Unix(1_800_000_000, 0), time.Unix(1_900_000_000, 0)
	certs := map[string][]certmagic.Certificate{
		"api.example": {withLeaf(later), withLeaf(soon)},
		"no-leaf":     {{}},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{
		names: []string{"api.example", "missing", "no-leaf"},
		certs: func(san string) []certmagic.Certificate { return certs[san] },
	})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "gateway_tls_certificate_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			got[label(m, "name")] = m.GetGauge().GetValue()
		}
	}
	if len(got) != 1 || got["api.example"] != float64(soon.Unix()) {
		t.Fatalf("got %v, want only api.example at %d (names without a certificate have no series)", got, soon.Unix())
	}
}

func withLeaf(notAfter time.Time) certmagic.Certificate {
	return certmagic.Certificate{Certificate: tls.Certificate{Leaf: &x509.Certificate{NotAfter: notAfter}}}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestGlobalOptionNeedsNames(t *testing.T) {
	if err := (&App{}).Validate(); err == nil || !strings.Contains(err.Error(), "tls_expiry_metrics") {
		t.Fatalf("Validate without names: %v", err)
	}
}
