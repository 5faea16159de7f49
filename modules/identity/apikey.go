package identity

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"
)

// APIKey accepts API keys ("lsk_<id>_<secret>", minted by `gateway
// new-api-key`) from a request header, checked against a file that holds
// only their SHA-256 hashes. The file is read again when it changes, without
// a restart: its modification time and size are polled every
// ReloadInterval (a stat, nothing more, when nothing changed), and it is
// read on every Caddy config reload too. A file that fails to parse on a
// poll leaves the keys loaded before in force; at start-up it is an error.
type APIKey struct {
	// Header carries the key. Default: X-API-Key.
	Header string `json:"header,omitempty"`
	// File is the keys file: JSON lines of {"id", "hash", "user", "tier",
	// "tenant", "expires" (RFC 3339)}. Empty: no key is accepted (useful
	// when the file is optional in the environment).
	File string `json:"file,omitempty"`
	// ReloadInterval is how often the file is checked for changes; a removed
	// key is accepted for at most this long. Default: 10s. At least 1s.
	ReloadInterval caddy.Duration `json:"reload_interval,omitempty"`

	// headerKey is Header as an http.Header key: canonicalizing a name
	// like X-API-Key allocates, on every request.
	headerKey string
	store     *KeyStore
	logger    *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (APIKey) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.authentication.providers.api_key",
		New: func() caddy.Module { return new(APIKey) },
	}
}

// Provision loads the keys file and starts watching it.
func (a *APIKey) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("api_key: registering metrics: %w", err)
	}
	if a.Header == "" {
		a.Header = "X-API-Key"
	}
	a.headerKey = http.CanonicalHeaderKey(a.Header)
	if a.ReloadInterval == 0 {
		a.ReloadInterval = caddy.Duration(10 * time.Second)
	}
	var err error
	a.store, err = NewKeyStore(a.File, nil)
	if err != nil {
		return fmt.Errorf("api_key: file %q: %w", a.File, err)
	}
	if a.File == "" {
		a.logger.Info("no API keys file configured; every API key is refused")
		return nil
	}
	a.logger.Info("API keys loaded", zap.String("file", a.File), zap.Int("keys", a.store.Len()))
	if a.ReloadInterval >= caddy.Duration(time.Second) {
		go a.watch(ctx, time.Duration(a.ReloadInterval))
	}
	return nil
}

// Validate checks the configuration.
func (a *APIKey) Validate() error {
	if !httpguts.ValidHeaderFieldName(a.Header) {
		return fmt.Errorf("api_key: header %q is not a valid header name", a.Header)
	}
	if strings.HasPrefix(http.CanonicalHeaderKey(a.Header), identityHeaderPrefix) {
		return fmt.Errorf("api_key: header %q starts with %s, which the gateway strips", a.Header, identityHeaderPrefix)
	}
	if a.ReloadInterval < caddy.Duration(time.Second) {
		return fmt.Errorf("api_key: reload_interval %s is below 1s", time.Duration(a.ReloadInterval))
	}
	return nil
}

// Authenticate implements caddyauth.Authenticator, for use under Caddy's
// authentication handler.
func (a *APIKey) Authenticate(_ http.ResponseWriter, r *http.Request) (caddyauth.User, bool, error) {
	out := a.verify(r)
	return out.User, out.Result == ResultSuccess, nil
}

func (a *APIKey) verify(r *http.Request) Outcome {
	vals := r.Header[a.headerKey]
	switch len(vals) {
	case 0:
		return refuse(ResultMissing, "", nil)
	case 1:
		return a.store.Verify(strings.TrimSpace(vals[0]))
	}
	return refuse(ResultMalformed, "", errors.New("several API key headers"))
}

func (a *APIKey) detail(r Result) string { return Detail(providerAPIKey, r, 0) }

func (a *APIKey) credentialHeader() string { return a.headerKey }

// watch reloads the keys file when it changes, until the config is unloaded.
func (a *APIKey) watch(ctx caddy.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := a.store.Reload()
		if err != nil {
			apiKeyReloads.WithLabelValues(resultLabel(err)).Inc()
			// Once per distinct error, not once per poll.
			if err.Error() != lastErr {
				a.logger.Error("reloading API keys failed; keeping the keys loaded before", zap.Error(err))
			}
			lastErr = err.Error()
			continue
		}
		lastErr = ""
		if changed {
			apiKeyReloads.WithLabelValues(resultLabel(nil)).Inc()
			a.logger.Info("API keys reloaded", zap.String("file", a.File), zap.Int("keys", a.store.Len()))
		}
	}
}

// Interface guards
var (
	_ caddy.Provisioner       = (*APIKey)(nil)
	_ caddy.Validator         = (*APIKey)(nil)
	_ caddyauth.Authenticator = (*APIKey)(nil)
	_ provider                = (*APIKey)(nil)
)
