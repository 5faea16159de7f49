// Package caddytest runs a real Caddy, configured from a real Caddyfile, inside
// a test process: module integration tests use it instead of mocks. Ports are
// chosen at run time; the admin endpoint is off so packages can run in parallel.
package caddytest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/lexiscore/gateway/internal/testkit"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(testkit.FreeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}

// ClosedAddr returns an address on which nothing listens, so connections are refused.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// Instance is the Caddy running in this process.
type Instance struct {
	// HTTPPort serves the test's plain-HTTP site blocks: write them as
	// "http://127.0.0.1:{http_port}".
	HTTPPort int
	global   string
	storage  string
}

// Start adapts globalOptions and sites (a Caddyfile without its global block;
// "{http_port}" in it becomes Instance.HTTPPort) and loads them. Caddy stops
// when the test ends.
func Start(t testing.TB, globalOptions, sites string) *Instance {
	t.Helper()
	in := &Instance{HTTPPort: FreePort(t), global: globalOptions, storage: t.TempDir()}
	in.Load(t, sites)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	return in
}

// Load replaces the running config, as a reload does.
func (in *Instance) Load(t testing.TB, sites string) {
	t.Helper()
	port := fmt.Sprint(in.HTTPPort)
	caddyfile := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tskip_install_trust\n\tstorage file_system %s\n\thttp_port %s\n\t%s\n}\n%s",
		in.storage, port, in.global, strings.ReplaceAll(sites, "{http_port}", port))
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		t.Logf("Caddyfile warning: %s", w.String())
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v\n%s", err, cfg)
	}
	in.WaitReady(t, fmt.Sprintf("http://127.0.0.1:%d/", in.HTTPPort))
}

// URL returns the address of path on the plain-HTTP test site.
func (in *Instance) URL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", in.HTTPPort, path)
}

// WaitReady polls url until anything answers.
func (in *Instance) WaitReady(t testing.TB, url string) {
	t.Helper()
	testkit.Eventually(t, "caddy to answer on "+url, func() error {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
}

// Adapt turns a Caddyfile into Caddy's JSON config, as `caddy adapt` does:
// the Caddyfile adapter tests of every module read its output.
func Adapt(caddyfile string) ([]byte, error) {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return out, err
}

// ReadJSONLines reads a JSON-lines log file that a `log` block writes; a
// file not written yet holds no lines.
func ReadJSONLines(t testing.TB, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, e)
	}
	return out
}
