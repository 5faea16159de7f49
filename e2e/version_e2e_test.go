package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestVersionAndBuildInfo: `gateway version` names the gateway's own build
// before Caddy's, and the metrics endpoint says the same build runs:
// gateway_build_info is 1 with the version, revision and Go version that
// the command printed.
func TestVersionAndBuildInfo(t *testing.T) {
	out, err := gatewayCLI(t, nil, "version")
	if err != nil {
		t.Fatalf("gateway version: %v: %s", err, out)
	}
	m := regexp.MustCompile(`^LexiScore Gateway (\S+) \(revision (\S+), (\S+)\); Caddy v2\.\S+`).FindStringSubmatch(strings.TrimSpace(out))
	if m == nil {
		t.Fatalf("gateway version printed %q, want the gateway's version, revision and Go version, then Caddy's", out)
	}
	version, revision, goVersion := m[1], m[2], m[3]
	if goVersion != runtime.Version() {
		t.Errorf("Go version %q, want %q (the toolchain that built it)", goVersion, runtime.Version())
	}
	// Built from a git clone, the binary names its commit, even where
	// GOFLAGS says -buildvcs=false (as on this project's machines). Go
	// finds the repository only where .git is a directory: not in a
	// worktree.
	if fi, err := os.Stat(filepath.Join(bins.Root, ".git")); err == nil && fi.IsDir() {
		head, err := exec.Command("git", "-C", bins.Root, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatalf("git rev-parse HEAD: %v", err)
		}
		if want := strings.TrimSpace(string(head)); !strings.HasPrefix(revision, want) {
			t.Errorf("revision %q, want the clone's commit %s", revision, want)
		}
	}

	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)
	labels := map[string]string{"version": version, "revision": revision, "goversion": goVersion}
	if n, v := sumSeries(metrics(t, gw), "gateway_build_info", labels); n != 1 || v != 1 {
		t.Fatalf("%d gateway_build_info series with %v, value %v; want one at 1\n%s", n, labels, v, grepLines(gw.Metrics(t), "gateway_build_info"))
	}
}

// TestOwnCommandsHelp: the help of the gateway's own commands names the
// gateway and none of Caddy's documentation, which does not describe them.
func TestOwnCommandsHelp(t *testing.T) {
	for _, name := range []string{"issue-token", "new-api-key", "hash-api-key", "healthcheck"} {
		t.Run(name, func(t *testing.T) {
			out, err := gatewayCLI(t, nil, name, "--help")
			if err != nil {
				t.Fatalf("%s --help: %v: %s", name, err, out)
			}
			if !strings.Contains(out, "Usage:\n  gateway "+name+" ") {
				t.Errorf("no usage line for `gateway %s`:\n%s", name, out)
			}
			if lower := strings.ToLower(out); strings.Contains(lower, "caddy") {
				t.Errorf("the help mentions Caddy:\n%s", out)
			}
		})
	}
}
