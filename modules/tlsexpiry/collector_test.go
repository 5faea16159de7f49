package tlsexpiry

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lexiscore/gateway/internal/testkit"
)

func TestCollectorReportsEarliestExpiryPerName(t *testing.T) {
	soon, later := time.Unix(1_800_000_000, 0), time.Unix(1_900_000_000, 0)
	certs := map[string][]certmagic.Certificate{
		"api.example": {withLeaf(later), withLeaf(soon)},
		"no-leaf":     {{}},
	}
	c := &collector{
		names: []string{"api.example", "missing", "no-leaf"},
		certs: func(san string) []certmagic.Certificate { return certs[san] },
	}
	got, _ := testkit.Series(t, c, "gateway_tls_certificate_expiry_timestamp_seconds", map[string]string{"name": "api.example"})
	if n := testutil.CollectAndCount(c, "gateway_tls_certificate_expiry_timestamp_seconds"); n != 1 || got != float64(soon.Unix()) {
		t.Fatalf("%d series, api.example at %v; want only api.example at %d (names without a certificate have no series)", n, got, soon.Unix())
	}
}

func withLeaf(notAfter time.Time) certmagic.Certificate {
	return certmagic.Certificate{Certificate: tls.Certificate{Leaf: &x509.Certificate{NotAfter: notAfter}}}
}

func TestGlobalOptionNeedsNames(t *testing.T) {
	if err := (&App{}).Validate(); err == nil || !strings.Contains(err.Error(), "tls_expiry_metrics") {
		t.Fatalf("Validate without names: %v", err)
	}
}
