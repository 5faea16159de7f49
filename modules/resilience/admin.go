package resilience

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(DegradedAdmin{})
}

// DegradedAdmin adds /degraded to Caddy's admin API, where an operator reads
// or switches the gateway's degraded mode:
//
//	GET  /degraded                      → {"enabled":false,"manual":false,"automatic":false}
//	POST /degraded  {"enabled":true}    → switches it on (false: off)
//
// "enabled" is the effective mode; "automatic" is on while all breakers of a
// transport marked degrade_when_all_open are open. Switching off only clears
// the operator's switch.
type DegradedAdmin struct {
	logger *zap.Logger
}

// degradedStatus is the JSON body of /degraded answers.
type degradedStatus struct {
	Enabled   bool `json:"enabled"`
	Manual    bool `json:"manual"`
	Automatic bool `json:"automatic"`
}

// maxAdminBody bounds the request body of POST /degraded.
const maxAdminBody = 1024

// CaddyModule returns the Caddy module information.
func (DegradedAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.degraded",
		New: func() caddy.Module { return new(DegradedAdmin) },
	}
}

// Provision takes the logger.
func (a *DegradedAdmin) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	return nil
}

// Routes returns the admin routes.
func (a *DegradedAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/degraded", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func (a *DegradedAdmin) serve(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost, http.MethodPut:
		var req struct {
			Enabled *bool `json:"enabled"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody))
		if err := dec.Decode(&req); err != nil || req.Enabled == nil {
			if err == nil {
				err = errors.New(`missing "enabled"`)
			}
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf(`degraded: body must be {"enabled": true|false}: %w`, err)}
		}
		if was := degraded.manual.Swap(*req.Enabled); was != *req.Enabled {
			a.logger.Warn("degraded mode switched by operator", zap.Bool("enabled", *req.Enabled))
		}
	default:
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("degraded: method %s not allowed", r.Method)}
	}
	manual, auto := degraded.manual.Load(), degraded.automatic()
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(degradedStatus{Enabled: manual || auto, Manual: manual, Automatic: auto})
}

// Interface guards
var (
	_ caddy.Provisioner = (*DegradedAdmin)(nil)
	_ caddy.AdminRouter = (*DegradedAdmin)(nil)
)
