package identity

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/golang-jwt/jwt/v5"
)

// TestProvidersUnderCaddyAuthentication runs the jwt provider under Caddy's
// own authentication handler, as a JSON config would.
func TestProvidersUnderCaddyAuthentication(t *testing.T) {
	t.Setenv("IDENTITY_STOCK_SECRET", string(testSecret))
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	raw, _ := json.Marshal(map[string]any{"secret_env": "IDENTITY_STOCK_SECRET"})
	auth := &caddyauth.Authentication{ProvidersRaw: caddy.ModuleMap{"jwt": raw}}
	if err := auth.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	// The stock handler uses the real clock.
	token := sign(t, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{"sub": "u1", "tier": "pro", "exp": time.Now().Add(time.Hour).Unix()})

	type result struct {
		repl   *caddy.Replacer
		w      *httptest.ResponseRecorder
		called bool
		err    error
	}
	serve := func(authz string) result {
		repl := caddy.NewReplacer()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		w := httptest.NewRecorder()
		called := false
		err := auth.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { called = true; return nil }))
		return result{repl, w, called, err}
	}

	ok := serve("Bearer " + token)
	if ok.err != nil || !ok.called {
		t.Fatalf("valid token: err %v, next called %v", ok.err, ok.called)
	}
	if id, _ := ok.repl.GetString("http.auth.user.id"); id != "u1" {
		t.Fatalf("{http.auth.user.id} = %q", id)
	}
	if tier, _ := ok.repl.GetString("http.auth.user.tier"); tier != "pro" {
		t.Fatalf("{http.auth.user.tier} = %q", tier)
	}
	bad := serve("Bearer a.b.c")
	if bad.err == nil || bad.called || bad.w.Header().Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
		t.Fatalf("bad token: err %v, next called %v, challenge %q", bad.err, bad.called, bad.w.Header().Get("WWW-Authenticate"))
	}
}
