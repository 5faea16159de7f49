// Package profiling runs continuous profiling with Grafana Pyroscope: the
// "profiling" Caddy app pushes CPU and heap profiles of the gateway to a
// Pyroscope server, and the profile_labels handler tags the CPU samples of
// each route with its name so that a flame graph can be filtered per route.
//
// One profiler runs per process, across config reloads: a reloaded
// configuration with the same settings keeps the running profiler, and the
// profiler is flushed before it stops when the process exits.
package profiling

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/grafana/pyroscope-go"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(App{})
	caddy.RegisterModule(Labels{})
}

const (
	defaultApplicationName = "lexiscore-gateway"
	defaultUploadRate      = 15 * time.Second
	minUploadRate          = time.Second
	// uploadTimeout bounds one upload, so that flushing at shutdown cannot
	// hang on a server that does not answer.
	uploadTimeout = 10 * time.Second
	stopTimeout   = 20 * time.Second
)

// profiles is the process's profiler, shared by every configuration.
var profiles = &manager{
	start:       startPyroscope,
	stopTimeout: stopTimeout,
	log: func(msg string, err error) {
		caddy.Log().Named("profiling").Error(msg, zap.Error(err))
	},
}

// profileTypes are the profile types that can be enabled: the ones that need
// no change to runtime sampling rates (mutex and block profiles do).
var profileTypes = map[string]pyroscope.ProfileType{
	"cpu":           pyroscope.ProfileCPU,
	"alloc_objects": pyroscope.ProfileAllocObjects,
	"alloc_space":   pyroscope.ProfileAllocSpace,
	"inuse_objects": pyroscope.ProfileInuseObjects,
	"inuse_space":   pyroscope.ProfileInuseSpace,
	"goroutines":    pyroscope.ProfileGoroutines,
}

var (
	// Pyroscope's rules for service and label names.
	applicationNameRE = regexp.MustCompile(`^[A-Za-z0-9_./-]{1,128}$`)
	tagKeyRE          = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]{0,63}$`)
	// Tag values are written into the application name as name{k=v,...}:
	// no separators, no spaces.
	tagValueRE = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,128}$`)
)

// App is the "profiling" app: continuous profiling of the whole process,
// pushed to Pyroscope. Every string field may hold placeholders such as
// {env.PYROSCOPE_BASIC_AUTH_PASSWORD} or {file./run/secrets/pyroscope},
// replaced when the configuration loads, so that secrets need not be
// written into the configuration (which the admin API can return).
type App struct {
	// ServerAddress is the URL of the Pyroscope server (or Grafana Cloud
	// Profiles endpoint) profiles are pushed to, e.g. http://pyroscope:4040.
	// Empty: profiling is off, at no cost.
	ServerAddress string `json:"server_address,omitempty"`
	// ApplicationName is the service name in Pyroscope. Default:
	// lexiscore-gateway. Letters, digits, '_', '.', '/' and '-'.
	ApplicationName string `json:"application_name,omitempty"`
	// Tags are labels on every profile of this process, such as env or
	// region. Keep them static and few: each distinct set is a series.
	Tags map[string]string `json:"tags,omitempty"`
	// TenantID is sent as X-Scope-OrgID to multi-tenant servers.
	TenantID string `json:"tenant_id,omitempty"`
	// BasicAuthUser and BasicAuthPassword authenticate the uploads; set both
	// or neither.
	BasicAuthUser     string `json:"basic_auth_user,omitempty"`
	BasicAuthPassword string `json:"basic_auth_password,omitempty"`
	// UploadRate is how often profiles are pushed. Default: 15s; at least
	// 1s. Shorter means fresher flame graphs and more uploads.
	UploadRate caddy.Duration `json:"upload_rate,omitempty"`
	// ProfileTypes to collect: cpu, alloc_objects, alloc_space,
	// inuse_objects, inuse_space, goroutines. Default: cpu and the four heap
	// profiles.
	ProfileTypes []string `json:"profile_types,omitempty"`

	resolved settings
	release  func()
	logger   *zap.Logger
}

// settings are an App's fields with placeholders replaced and defaults
// applied; their JSON form identifies the running profiler.
type settings struct {
	ServerAddress     string            `json:"server_address"`
	ApplicationName   string            `json:"application_name"`
	Tags              map[string]string `json:"tags"`
	TenantID          string            `json:"tenant_id"`
	BasicAuthUser     string            `json:"basic_auth_user"`
	BasicAuthPassword string            `json:"basic_auth_password"`
	UploadRate        time.Duration     `json:"upload_rate"`
	ProfileTypes      []string          `json:"profile_types"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "profiling",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision replaces placeholders and applies defaults.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	r := settings{
		ServerAddress:     repl.ReplaceKnown(a.ServerAddress, ""),
		ApplicationName:   repl.ReplaceKnown(a.ApplicationName, ""),
		TenantID:          repl.ReplaceKnown(a.TenantID, ""),
		BasicAuthUser:     repl.ReplaceKnown(a.BasicAuthUser, ""),
		BasicAuthPassword: repl.ReplaceKnown(a.BasicAuthPassword, ""),
		UploadRate:        time.Duration(a.UploadRate),
		ProfileTypes:      a.ProfileTypes,
		Tags:              map[string]string{},
	}
	for k, v := range a.Tags {
		r.Tags[k] = repl.ReplaceKnown(v, "")
	}
	if r.ApplicationName == "" {
		r.ApplicationName = defaultApplicationName
	}
	if r.UploadRate == 0 {
		r.UploadRate = defaultUploadRate
	}
	if len(r.ProfileTypes) == 0 {
		r.ProfileTypes = []string{"cpu", "alloc_objects", "alloc_space", "inuse_objects", "inuse_space"}
	}
	a.resolved = r
	return nil
}

// Validate checks the settings, whether profiling is on or not.
func (a *App) Validate() error {
	r := a.resolved
	if r.ServerAddress != "" {
		u, err := url.Parse(r.ServerAddress)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("profiling: server_address %q: want an http or https URL", redactURL(r.ServerAddress))
		}
	}
	if !applicationNameRE.MatchString(r.ApplicationName) {
		return fmt.Errorf("profiling: application_name %q: want 1 to 128 letters, digits, '_', '.', '/' or '-'", r.ApplicationName)
	}
	for k, v := range r.Tags {
		if !tagKeyRE.MatchString(k) || k == "__name__" {
			return fmt.Errorf("profiling: tag name %q: want a letter or '_' then letters, digits, '_' or '.'", k)
		}
		if !tagValueRE.MatchString(v) {
			return fmt.Errorf("profiling: tag %s value %q: want 1 to 128 letters, digits, '_', '.', ':', '/' or '-'", k, v)
		}
	}
	if (r.BasicAuthUser == "") != (r.BasicAuthPassword == "") {
		return fmt.Errorf("profiling: basic_auth_user and basic_auth_password must be set together")
	}
	if r.UploadRate < minUploadRate {
		return fmt.Errorf("profiling: upload_rate %v: must be at least %v", r.UploadRate, minUploadRate)
	}
	for _, t := range r.ProfileTypes {
		if _, ok := profileTypes[t]; !ok {
			return fmt.Errorf("profiling: profile type %q: want one of %v", t, slices.Sorted(maps.Keys(profileTypes)))
		}
	}
	return nil
}

// Start starts the profiler, or keeps the one a previous configuration
// started when its settings are the same.
func (a *App) Start() error {
	r := a.resolved
	if r.ServerAddress == "" {
		a.logger.Info("continuous profiling off: no server address")
		return nil
	}
	key, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("profiling: %w", err)
	}
	release, err := profiles.acquire(string(key), r.pyroscopeConfig(a.logger))
	if err != nil {
		return fmt.Errorf("profiling: server %s: %w", redactURL(r.ServerAddress), err)
	}
	a.release = release
	a.logger.Info("continuous profiling on",
		zap.String("server_address", redactURL(r.ServerAddress)),
		zap.String("application_name", r.ApplicationName),
		zap.Duration("upload_rate", r.UploadRate))
	return nil
}

// Stop gives up this configuration's hold on the profiler. The profiler
// stops, after a last flush, only if no newer configuration holds it: when
// the process exits, not when a reload replaces this configuration.
func (a *App) Stop() error {
	if a.release != nil {
		a.release()
		a.release = nil
	}
	return nil
}

func (r settings) pyroscopeConfig(logger *zap.Logger) pyroscope.Config {
	types := make([]pyroscope.ProfileType, 0, len(r.ProfileTypes))
	for _, t := range r.ProfileTypes {
		types = append(types, profileTypes[t])
	}
	return pyroscope.Config{
		ApplicationName: r.ApplicationName,
		// pyroscope-go edits the map it is given.
		Tags:              maps.Clone(r.Tags),
		ServerAddress:     r.ServerAddress,
		BasicAuthUser:     r.BasicAuthUser,
		BasicAuthPassword: r.BasicAuthPassword,
		TenantID:          r.TenantID,
		UploadRate:        r.UploadRate,
		ProfileTypes:      types,
		Logger:            zapLogger{logger.Sugar()},
		HTTPClient: &http.Client{
			Timeout: uploadTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

// redactURL hides a password written into a URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// zapLogger adapts Caddy's logger to pyroscope-go's.
type zapLogger struct{ s *zap.SugaredLogger }

func (l zapLogger) Infof(f string, args ...any)  { l.s.Debugf(f, args...) }
func (l zapLogger) Debugf(f string, args ...any) { l.s.Debugf(f, args...) }
func (l zapLogger) Errorf(f string, args ...any) { l.s.Errorf(f, args...) }

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
	_ pyroscope.Logger  = zapLogger{}
)
