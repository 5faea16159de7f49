package profiling

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	cases := []struct {
		name, input string
		want        App
		wantErr     string
	}{
		{"empty block is off", "profiling", App{}, ""},
		{"unset variables leave settings empty", "profiling {\n server_address\n tags\n tenant_id\n basic_auth_user\n basic_auth_password\n}", App{}, ""},
		{
			"everything",
			`profiling {
				server_address http://pyroscope:4040
				application_name gw
				tags env=prod region=eu-1
				tags team=sre
				tenant_id acme
				basic_auth_user gw
				basic_auth_password {env.PYROSCOPE_PASSWORD}
				upload_rate 10s
				profile_types cpu inuse_space
			}`,
			App{
				ServerAddress: "http://pyroscope:4040", ApplicationName: "gw",
				Tags:     map[string]string{"env": "prod", "region": "eu-1", "team": "sre"},
				TenantID: "acme", BasicAuthUser: "gw", BasicAuthPassword: "{env.PYROSCOPE_PASSWORD}",
				UploadRate: caddy.Duration(10 * time.Second), ProfileTypes: []string{"cpu", "inuse_space"},
			},
			"",
		},
		{"argument on the option", "profiling x", App{}, "wrong argument count"},
		{"two server addresses", "profiling {\n server_address a b\n}", App{}, "wrong argument count"},
		{"application name required", "profiling {\n application_name\n}", App{}, "wrong argument count"},
		{"tag without value", "profiling {\n tags env\n}", App{}, `tag "env": want key=value`},
		{"tag given twice", "profiling {\n tags env=a env=b\n}", App{}, `tag "env" given twice`},
		{"bad duration", "profiling {\n upload_rate soon\n}", App{}, `upload_rate: bad duration "soon"`},
		{"two durations", "profiling {\n upload_rate 1s 2s\n}", App{}, "wrong argument count"},
		{"no profile types", "profiling {\n profile_types\n}", App{}, "wrong argument count"},
		{"unknown subdirective", "profiling {\n sample_rate 100\n}", App{}, `unknown subdirective "sample_rate"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got App
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestUnmarshalLabels(t *testing.T) {
	var h Labels
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("profile_labels scores")); err != nil || h.Route != "scores" {
		t.Fatalf("got %+v, %v", h, err)
	}
	for _, bad := range []string{"profile_labels", "profile_labels a b", "profile_labels a {\n x\n}"} {
		if err := new(Labels).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestAdapt checks the global option becomes the "profiling" app and the
// directive a handler placed before everything else in its route.
func TestAdapt(t *testing.T) {
	input := `{
	profiling {
		server_address http://pyroscope:4040
		tags env=prod
	}
}
:8080 {
	respond ok
	profile_labels scores
}`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			Profiling App `json:"profiling"`
			HTTP      struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Handler string `json:"handler"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if p := cfg.Apps.Profiling; p.ServerAddress != "http://pyroscope:4040" || p.Tags["env"] != "prod" {
		t.Fatalf("profiling app = %+v\n%s", p, out)
	}
	var handlers []string
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, r := range srv.Routes {
			for _, h := range r.Handle {
				handlers = append(handlers, h.Handler)
			}
		}
	}
	if len(handlers) != 2 || handlers[0] != "profile_labels" {
		t.Fatalf("handlers %v, want profile_labels first\n%s", handlers, out)
	}
}
