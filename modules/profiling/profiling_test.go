package profiling

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/google/pprof/profile"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

func init() {
	caddy.RegisterModule(spin{})
	httpcaddyfile.RegisterHandlerDirective("profiling_test_spin", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		return new(spin), nil
	})
}

// spin is a test handler that burns CPU, so that the CPU profile has
// samples inside the labelled route.
type spin struct{}

func (spin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.profiling_test_spin", New: func() caddy.Module { return new(spin) }}
}

func (spin) ServeHTTP(w http.ResponseWriter, _ *http.Request, _ caddyhttp.Handler) error {
	sum := sha256.Sum256(nil)
	for start := time.Now(); time.Since(start) < 20*time.Millisecond; {
		sum = sha256.Sum256(sum[:])
	}
	w.Header().Set("X-Sum", fmt.Sprintf("%x", sum[:4]))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// upload is one profile pushed to the fake Pyroscope server.
type upload struct {
	app     string            // the application name
	labels  map[string]string // the tags of the name parameter
	profile *profile.Profile
}

func (u upload) isCPU() bool {
	return slices.ContainsFunc(u.profile.SampleType, func(st *profile.ValueType) bool { return st.Type == "cpu" })
}

func (u upload) isHeap() bool {
	return slices.ContainsFunc(u.profile.SampleType, func(st *profile.ValueType) bool { return st.Type == "inuse_space" })
}

// routeSamples counts the samples labelled route=route.
func (u upload) routeSamples(route string) int {
	n := 0
	for _, s := range u.profile.Sample {
		if slices.Contains(s.Label["route"], route) {
			n++
		}
	}
	return n
}

// ingest is a fake Pyroscope server: it parses every /ingest upload.
type ingest struct {
	URL string

	mu      sync.Mutex
	uploads []upload
	errs    []error
}

// nameRE splits Pyroscope's name parameter: app{k=v,k=v}.
var nameRE = regexp.MustCompile(`^([^{]+)\{(.*)\}$`)

func newIngest(t *testing.T) *ingest {
	t.Helper()
	in := &ingest{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := parseUpload(r)
		in.mu.Lock()
		defer in.mu.Unlock()
		if err != nil {
			in.errs = append(in.errs, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		in.uploads = append(in.uploads, u)
	}))
	t.Cleanup(srv.Close)
	in.URL = srv.URL
	return in
}

func parseUpload(r *http.Request) (upload, error) {
	if r.Method != http.MethodPost || r.URL.Path != "/ingest" {
		return upload{}, fmt.Errorf("unexpected %s %s", r.Method, r.URL.Path)
	}
	m := nameRE.FindStringSubmatch(r.URL.Query().Get("name"))
	if m == nil {
		return upload{}, fmt.Errorf("name %q is not app{labels}", r.URL.Query().Get("name"))
	}
	u := upload{app: m[1], labels: map[string]string{}}
	for _, kv := range strings.Split(m[2], ",") {
		k, v, _ := strings.Cut(kv, "=")
		u.labels[k] = v
	}
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		return upload{}, fmt.Errorf("multipart body: %w", err)
	}
	f, _, err := r.FormFile("profile")
	if err != nil {
		return upload{}, fmt.Errorf("profile part: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return upload{}, err
	}
	if u.profile, err = profile.Parse(bytes.NewReader(b)); err != nil {
		return upload{}, fmt.Errorf("parsing the pprof profile: %w", err)
	}
	return u, nil
}

func (in *ingest) Uploads(t *testing.T) []upload {
	t.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, err := range in.errs {
		t.Errorf("bad upload: %v", err)
	}
	return slices.Clone(in.uploads)
}

func globalOptions(server, tags, rate string) string {
	return fmt.Sprintf(`profiling {
		server_address %s
		application_name gw-test
		tags %s
		upload_rate %s
	}`, server, tags, rate)
}

const spinSite = `
http://127.0.0.1:{http_port} {
	route /spin {
		profile_labels spin
		profiling_test_spin
	}
	respond ok
}`

// noKeepAlive opens a connection per request: a connection kept from before
// a reload may be closed by the old server just as it is reused.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func spinRequests(t *testing.T, in *caddytest.Instance, n int) {
	t.Helper()
	for range n {
		resp, err := noKeepAlive.Get(in.URL("/spin"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("GET /spin: %s", resp.Status)
		}
	}
}

// sessions returns the profiler session IDs of the uploads, in order of
// first appearance: one per started profiler.
func sessions(uploads []upload) []string {
	var ids []string
	for _, u := range uploads {
		if id := u.labels["__session_id__"]; !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestProfilesFlushedAtExitNotAtReload runs the app in a real Caddy with an
// upload rate of an hour, so that only a flush can upload anything: a
// reload with the same settings uploads nothing (the profiler was not
// stopped, and no second one started), and stopping Caddy uploads CPU
// samples labelled with the route and a heap profile, all tagged with the
// application name and tags, all from one profiler session.
func TestProfilesFlushedAtExitNotAtReload(t *testing.T) {
	pyro := newIngest(t)
	in := caddytest.Start(t, globalOptions(pyro.URL, "env=test region=eu-1", "1h"), spinSite)
	spinRequests(t, in, 20)
	in.Load(t, spinSite) // a config reload with the same settings
	if !profiles.running() {
		t.Fatal("a reload stopped the profiler")
	}
	spinRequests(t, in, 30)
	if got := pyro.Uploads(t); len(got) != 0 {
		t.Fatalf("%d uploads before exit: the reload flushed or restarted the profiler (sessions %v)", len(got), sessions(got))
	}

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if profiles.running() {
		t.Fatal("the profiler still runs after Caddy stopped")
	}
	uploads := pyro.Uploads(t)
	if ids := sessions(uploads); len(ids) != 1 {
		t.Fatalf("uploads from %d profiler sessions %v, want 1", len(ids), ids)
	}
	var cpu, heap int
	for _, u := range uploads {
		if u.app != "gw-test" || u.labels["env"] != "test" || u.labels["region"] != "eu-1" {
			t.Errorf("upload named %s %v, want gw-test with env=test and region=eu-1", u.app, u.labels)
		}
		if u.isCPU() {
			cpu += u.routeSamples("spin")
		}
		if u.isHeap() {
			heap++
		}
	}
	if cpu == 0 {
		t.Errorf("no CPU sample labelled route=spin in %d uploads", len(uploads))
	}
	if heap == 0 {
		t.Errorf("no heap profile in %d uploads", len(uploads))
	}
}

// TestChangedSettingsReplaceTheProfiler reloads with other tags: the old
// profiler is flushed and stopped before the new one starts, so the uploads
// of the two sessions never interleave.
func TestChangedSettingsReplaceTheProfiler(t *testing.T) {
	pyro := newIngest(t)
	in := caddytest.Start(t, globalOptions(pyro.URL, "env=a", "1h"), spinSite)
	spinRequests(t, in, 10)
	// A second Start loads another config into the same process: a reload.
	in = caddytest.Start(t, globalOptions(pyro.URL, "env=b", "1h"), spinSite)
	atReload := pyro.Uploads(t)
	if len(atReload) == 0 || len(sessions(atReload)) != 1 || atReload[0].labels["env"] != "a" {
		t.Fatalf("at the reload: %d uploads from sessions %v, want the old profiler's flush", len(atReload), sessions(atReload))
	}
	spinRequests(t, in, 10)
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	uploads := pyro.Uploads(t)
	ids := sessions(uploads)
	if len(ids) != 2 {
		t.Fatalf("sessions %v, want the old and the new profiler's", ids)
	}
	for i, u := range uploads {
		want := "a"
		if i >= len(atReload) {
			want = "b"
		}
		if u.labels["env"] != want || u.labels["__session_id__"] != ids[map[string]int{"a": 0, "b": 1}[want]] {
			t.Errorf("upload %d: env=%s session %s, want env=%s of session %d", i, u.labels["env"], u.labels["__session_id__"], want, i)
		}
	}
}

// TestPeriodicUploads checks that profiles arrive while running, at the
// upload rate, without waiting for a flush.
func TestPeriodicUploads(t *testing.T) {
	pyro := newIngest(t)
	in := caddytest.Start(t, globalOptions(pyro.URL, "env=test", "1s"), spinSite)
	testkit.Eventually(t, "a labelled CPU profile and a heap profile", func() error {
		spinRequests(t, in, 5)
		var labelled, heap bool
		uploads := pyro.Uploads(t)
		for _, u := range uploads {
			labelled = labelled || (u.isCPU() && u.routeSamples("spin") > 0)
			heap = heap || u.isHeap()
		}
		if !labelled || !heap {
			return fmt.Errorf("%d uploads, labelled CPU %v, heap %v", len(uploads), labelled, heap)
		}
		return nil
	})
}

// TestOffWithoutServerAddress: an empty server address (an unset
// environment variable) turns profiling off, and profile_labels passes
// requests through.
func TestOffWithoutServerAddress(t *testing.T) {
	in := caddytest.Start(t, "profiling {\n\t\tserver_address\n\t}", spinSite)
	spinRequests(t, in, 1)
	if profiles.running() {
		t.Fatal("profiling runs without a server address")
	}
}

// TestLabelsHandler checks the pprof label the handler puts on the rest of
// the chain, and that it does nothing while profiling is off.
func TestLabelsHandler(t *testing.T) {
	r := &recorder{}
	m := r.manager(time.Minute)
	h := Labels{Route: "scores", profiles: m}
	label := func() (string, bool) {
		var got string
		var ok bool
		next := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
			got, ok = pprof.Label(r.Context(), "route")
			return nil
		})
		if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), next); err != nil {
			t.Fatal(err)
		}
		return got, ok
	}
	if v, ok := label(); ok {
		t.Fatalf("route label %q set while profiling is off", v)
	}
	release := mustAcquire(t, m, "a")
	defer release()
	if v, ok := label(); !ok || v != "scores" {
		t.Fatalf("route label = %q, %v; want scores", v, ok)
	}
}

// TestProvisionReplacesPlaceholders keeps secrets out of the configuration.
func TestProvisionReplacesPlaceholders(t *testing.T) {
	t.Setenv("TEST_PYROSCOPE_PASSWORD", "s3cret")
	a := App{ServerAddress: "http://pyroscope:4040", BasicAuthUser: "gw", BasicAuthPassword: "{env.TEST_PYROSCOPE_PASSWORD}"}
	if err := a.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if a.resolved.BasicAuthPassword != "s3cret" || a.BasicAuthPassword != "{env.TEST_PYROSCOPE_PASSWORD}" {
		t.Fatalf("password: resolved %q, configured %q", a.resolved.BasicAuthPassword, a.BasicAuthPassword)
	}
	c := a.resolved.pyroscopeConfig(caddy.Log())
	if c.ApplicationName != defaultApplicationName || c.UploadRate != defaultUploadRate || len(c.ProfileTypes) != 5 {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name    string
		app     App
		wantErr string
	}{
		{"off", App{}, ""},
		{"on", App{ServerAddress: "https://profiles.example:4040", Tags: map[string]string{"env": "prod", "k8s.ns": "gw"}, ProfileTypes: []string{"cpu", "goroutines"}}, ""},
		{"not a URL", App{ServerAddress: "pyroscope:4040"}, "server_address"},
		{"password in URL redacted", App{ServerAddress: "ftp://u:hunter2@x"}, "xxxxx"},
		{"bad application name", App{ApplicationName: "gw test"}, "application_name"},
		{"bad tag name", App{Tags: map[string]string{"1env": "x"}}, "tag name"},
		{"reserved tag name", App{Tags: map[string]string{"__name__": "x"}}, "tag name"},
		{"bad tag value", App{Tags: map[string]string{"env": "a,b"}}, "tag env value"},
		{"empty tag value", App{Tags: map[string]string{"env": ""}}, "tag env value"},
		{"half basic auth", App{BasicAuthUser: "u"}, "basic_auth_user and basic_auth_password"},
		{"upload rate too short", App{UploadRate: caddy.Duration(100 * time.Millisecond)}, "upload_rate"},
		{"unknown profile type", App{ProfileTypes: []string{"mutex_count"}}, `profile type "mutex_count"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.app
			if err := a.Provision(caddy.Context{}); err != nil {
				t.Fatal(err)
			}
			err := a.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
	if err := (&Labels{Route: "scores/v1"}).Validate(); err == nil {
		t.Error("route with a slash accepted")
	}
	if err := (&Labels{Route: "scores_v1.read"}).Validate(); err != nil {
		t.Error(err)
	}
}

// BenchmarkLabels measures what profile_labels adds to a request, with
// profiling off and on.
func BenchmarkLabels(b *testing.B) {
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	r := &recorder{}
	m := r.manager(time.Minute)
	h := Labels{Route: "scores", profiles: m}
	b.Run("off", func(b *testing.B) {
		for b.Loop() {
			_ = h.ServeHTTP(w, req, next)
		}
	})
	release, err := m.acquire("a", cfg("a"))
	if err != nil {
		b.Fatal(err)
	}
	defer release()
	b.Run("on", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = h.ServeHTTP(w, req, next)
		}
	})
}
