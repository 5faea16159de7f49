package httpsig

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/lexiscore/gateway/internal/problemjson"
	"github.com/lexiscore/gateway/internal/secret"
)

// ProblemTypeBase prefixes the problem types VerifyMiddleware answers with.
const ProblemTypeBase = "https://github.com/lexiscore/gateway/blob/main/docs/validation-and-signing.md#"

// VerifyMiddleware refuses, with a 401 problem+json document, any request
// that v does not verify: unsigned, tampered with (method, path, query,
// covered headers or body), too old, replayed, or signed with an unknown
// key; with a 503 and Retry-After while v's replay cache is full. The body
// is read and hashed before next runs (held in memory up to
// Options.MemoryLimit, spooled to a temporary file above), so next only ever
// sees a body that matches the signature; a body over Options.MaxBody is
// answered 413. Requests for which exempt returns true (health checks) pass
// unchecked; exempt may be nil.
func VerifyMiddleware(v *Verifier, exempt func(*http.Request) bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if exempt != nil && exempt(r) {
				next.ServeHTTP(w, r)
				return
			}
			vd, err := v.Verify(r)
			if errors.Is(err, ErrReplayCacheFull) {
				// Nonces leave the cache as their second ages out.
				w.Header().Set("Retry-After", "1")
				writeProblem(w, r, http.StatusServiceUnavailable, "replay-cache-full", err)
				return
			}
			if err != nil {
				writeProblem(w, r, http.StatusUnauthorized, "signature-invalid", err)
				return
			}
			body, err := Spool(r.Body, r.ContentLength, SpoolLimits{Memory: v.opts.MemoryLimit, Max: v.opts.MaxBody, Dir: v.opts.SpoolDir})
			if err != nil {
				if errors.Is(err, ErrBodyTooLarge) {
					writeProblem(w, r, http.StatusRequestEntityTooLarge, "body-too-large", ErrBodyTooLarge)
					return
				}
				// The body could not be read (the caller went away): there is
				// no one to answer, and nothing to pass on.
				writeProblem(w, r, http.StatusBadRequest, "body-unreadable", errors.New("the body could not be read"))
				return
			}
			defer body.Close()
			if err := vd.CheckBody(body.Sum); err != nil {
				writeProblem(w, r, http.StatusUnauthorized, "signature-invalid", err)
				return
			}
			r.Body, r.ContentLength = body.Reader(), body.Len
			next.ServeHTTP(w, r)
		})
	}
}

// writeProblem answers with an RFC 9457 document. err is one of the package
// errors (possibly wrapped), whose text reveals nothing secret.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, typ string, err error) {
	var ext map[string]any
	if status == http.StatusUnauthorized {
		ext = map[string]any{"reason": Reason(err)}
	}
	problemjson.Write(w, r, status, ProblemTypeBase+typ, detailOf(err), r.Header.Get("X-Request-ID"), ext)
}

// ParseKeyFiles reads the keys named by spec, a comma-separated list of
// keyid:secret_file pairs such as "gw-2025-01:/run/secrets/gw1,gw-2025-02:/run/secrets/gw2"
// (the form of the backend's -signing-keys flag and SCORING_SIGNING_KEYS).
func ParseKeyFiles(spec string) ([]Key, error) {
	var keys []Key
	for _, pair := range strings.Split(spec, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		id, path, ok := strings.Cut(pair, ":")
		if !ok || id == "" || path == "" {
			return nil, fmt.Errorf("signing key %q: want keyid:secret_file", pair)
		}
		key, err := secret.Read("", path)
		if err != nil {
			return nil, fmt.Errorf("signing key %q: %w", id, err)
		}
		k := Key{ID: id, Secret: key}
		if err := k.check(); err != nil {
			return nil, fmt.Errorf("signing key %q from %s: %w", id, path, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no signing key given")
	}
	return keys, nil
}
