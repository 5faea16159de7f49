// Package signing signs every request reverse_proxy sends upstream with an
// RFC 9421 HTTP Message Signature (hmac-sha256) and an RFC 9530
// Content-Digest, so that the backend can refuse requests that did not come
// through the gateway. It is a transport that wraps another (Caddy's http
// transport by default), so each attempt is signed at send time, after
// retries and fallbacks picked its upstream. See internal/httpsig for the
// scheme and docs/validation-and-signing.md for rotation.
package signing

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/lexiscore/gateway/internal/httpsig"
	"github.com/lexiscore/gateway/internal/proxytransport"
	"github.com/lexiscore/gateway/internal/secret"
	"github.com/lexiscore/gateway/internal/telemetry"
)

func init() {
	caddy.RegisterModule(Transport{})
}

// Defaults of the body limits.
const (
	DefaultMemoryLimit int64 = 1 << 20
	DefaultMaxBody     int64 = 64 << 20
)

// Transport signs each request, then sends it with the wrapped transport.
//
// The Content-Digest header travels before the body, so the body has to be
// read in full before the request can be signed: bodies up to MemoryLimit
// are held in memory, larger ones are spooled to an unlinked temporary file
// while they are hashed, so a 25 MiB upload costs disk, not memory. The
// price is store-and-forward: the upstream sees the first byte of a large
// body only after the gateway has received its last.
type Transport struct {
	proxytransport.Wrapper

	// KeyID names the key in the signature's keyid parameter; the backend
	// picks the secret by it. Required. Use a new ID for each new secret.
	KeyID string `json:"key_id,omitempty"`
	// SecretFile is a file holding the shared secret, trailing line breaks
	// ignored. It must pass internal/secret's rules (at least 32 bytes, no
	// placeholder, enough distinct bytes), like every secret of the gateway.
	// Only one of the file and SecretEnv's variable may hold a value.
	SecretFile string `json:"secret_file,omitempty"`
	// SecretEnv names the environment variable holding the secret, read at
	// provisioning, so that the secret never appears in the config (or in
	// the admin API's copy of it).
	SecretEnv string `json:"secret_env,omitempty"`
	// MemoryLimit is the largest body held in memory while it is hashed, in
	// bytes; larger bodies go to a temporary file. Default: 1 MiB.
	MemoryLimit int64 `json:"memory_limit,omitempty"`
	// MaxBody is the largest body sent at all, in bytes; a larger one fails
	// the attempt (502). Keep it above openapi_validate's max_upload.
	// Default: 64 MiB.
	MaxBody int64 `json:"max_body,omitempty"`
	// SpoolDir holds the temporary files. Default: the system's temporary
	// directory.
	SpoolDir string `json:"spool_dir,omitempty"`

	signer *httpsig.Signer
	// signedCount is gateway_signed_requests_total for this key.
	signedCount prometheus.Counter
}

// CaddyModule returns the Caddy module information.
func (Transport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.signed",
		New: func() caddy.Module { return new(Transport) },
	}
}

// Provision reads the secret and loads the wrapped transport.
func (t *Transport) Provision(ctx caddy.Context) error {
	if err := telemetry.Register(ctx.GetMetricsRegistry(), signed, failures); err != nil {
		return fmt.Errorf("transport signed: registering metrics: %w", err)
	}
	if t.KeyID == "" {
		return errors.New("transport signed: key_id is required")
	}
	key, err := secret.Load(t.SecretEnv, t.SecretFile)
	if err != nil {
		return fmt.Errorf("transport signed: %w", err)
	}
	t.signer, err = httpsig.NewSigner(httpsig.Key{ID: t.KeyID, Secret: key}, nil)
	if err != nil {
		return fmt.Errorf("transport signed: key_id %q: %w", t.KeyID, err)
	}
	t.signedCount = signed.WithLabelValues(t.KeyID)
	if t.MemoryLimit == 0 {
		t.MemoryLimit = DefaultMemoryLimit
	}
	if t.MaxBody == 0 {
		t.MaxBody = DefaultMaxBody
	}
	if err := t.ProvisionInner(ctx); err != nil {
		return fmt.Errorf("transport signed: %w", err)
	}
	return nil
}

// Validate checks the limits.
func (t *Transport) Validate() error {
	if t.MemoryLimit < 0 || t.MaxBody < 0 || t.MemoryLimit > t.MaxBody {
		return fmt.Errorf("transport signed: memory_limit %d and max_body %d must be positive, memory_limit at most max_body",
			t.MemoryLimit, t.MaxBody)
	}
	return nil
}

// emptySum is the SHA-256 of the empty body.
var emptySum = sha256.Sum256(nil)

// RoundTrip signs a copy of req and sends it with the wrapped transport.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	sum := emptySum
	if req.Body != nil && req.Body != http.NoBody {
		body, err := httpsig.Spool(req.Body, req.ContentLength,
			httpsig.SpoolLimits{Memory: t.MemoryLimit, Max: t.MaxBody, Dir: t.SpoolDir})
		_ = req.Body.Close()
		if err != nil {
			failures.WithLabelValues(failureReason(err)).Inc()
			return nil, fmt.Errorf("signing request: %w", err)
		}
		sum = body.Sum
		out.Body, out.ContentLength, out.TransferEncoding, out.GetBody = body.Reader(), body.Len, nil, nil
		if body.Len == 0 {
			out.Body = http.NoBody
		} else if body.InMemory() {
			// Lets the http transport resend the body on a stale connection.
			out.GetBody = func() (io.ReadCloser, error) { return body.Reader(), nil }
		}
	}
	// The signature covers @authority: sent with the upstream's address as
	// its Host, a request signed for one upstream is refused by the others
	// (the client's Host is in X-Forwarded-Host).
	out.Host = out.URL.Host
	if err := t.signer.Sign(out, sum); err != nil {
		failures.WithLabelValues("sign").Inc()
		if out.Body != nil {
			_ = out.Body.Close()
		}
		return nil, fmt.Errorf("signing request: %w", err)
	}
	t.signedCount.Inc()
	if span := trace.SpanFromContext(req.Context()); span.IsRecording() {
		span.AddEvent("request signed", trace.WithAttributes(attribute.String("gateway.signing.key_id", t.KeyID)))
	}
	return t.Inner.RoundTrip(out)
}

func failureReason(err error) string {
	if errors.Is(err, httpsig.ErrBodyTooLarge) {
		return "body_too_large"
	}
	return "body_error"
}

// Interface guards
var (
	_ caddy.Provisioner = (*Transport)(nil)
	_ caddy.Validator   = (*Transport)(nil)
	_ http.RoundTripper = (*Transport)(nil)
)
