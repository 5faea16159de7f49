package identity

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"
)

// JWKSOptions configure a remote JWK Set.
type JWKSOptions struct {
	// URL is where the JWK Set is fetched from.
	URL string
	// RefreshInterval is how often the set is fetched in the background.
	RefreshInterval time.Duration
	// MinRefreshInterval bounds the extra fetches that a token with an
	// unknown kid triggers (a key rotated in at the issuer): at most one per
	// interval, so unknown kids cannot make the gateway hammer the issuer.
	MinRefreshInterval time.Duration
	// Timeout bounds one fetch, and how long a request with an unknown kid
	// may wait for one.
	Timeout time.Duration
	// OnRefresh is told the result of every fetch: nil on success.
	OnRefresh func(err error)
}

// NewJWKS returns a keyfunc backed by the JWK Set at o.URL, refreshed until
// ctx ends. It starts even when the URL cannot be reached, and a failed
// refresh keeps the keys of the last good one, so an outage of the issuer
// does not log everybody out.
func NewJWKS(ctx context.Context, o JWKSOptions) (keyfunc.Keyfunc, error) {
	store := reportingStorage{Storage: jwkset.NewMemoryStorage(), onReplace: func() { o.OnRefresh(nil) }}
	remote, err := jwkset.NewStorageFromHTTP(o.URL, jwkset.HTTPClientStorageOptions{
		Client:                    &http.Client{Timeout: o.Timeout},
		Ctx:                       ctx,
		HTTPTimeout:               o.Timeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       func(_ context.Context, err error) { o.OnRefresh(err) },
		RefreshInterval:           o.RefreshInterval,
		Storage:                   store,
	})
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", o.URL, err)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{o.URL: remote},
		RateLimitWaitMax:  o.Timeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(o.MinRefreshInterval), 1),
	})
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", o.URL, err)
	}
	return keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: client})
}

// reportingStorage tells when a fetch replaced the keys: jwkset reports
// failed refreshes but not successful ones.
type reportingStorage struct {
	jwkset.Storage
	onReplace func()
}

func (s reportingStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	if err := s.Storage.KeyReplaceAll(ctx, given); err != nil {
		return err
	}
	s.onReplace()
	return nil
}
