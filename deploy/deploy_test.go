// Package deploy checks the shipped deployment files with the tools that
// read them: the container image (podman), the compose stack
// (docker-compose) and the systemd unit (systemd-analyze). A check whose
// tool is missing is skipped and says so; deploy/install-deps.sh installs
// them. The Helm chart has its own module, deploy/helm/test.
package deploy

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// need returns the path of tool, skipping the test when it is missing.
func need(t *testing.T, tool string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s is not installed (deploy/install-deps.sh installs it): %v", tool, err)
	}
	return path
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestSystemdUnit verifies the unit with systemd-analyze, with the
// gateway's path pointing at a real binary (verify checks that it exists).
func TestSystemdUnit(t *testing.T) {
	analyze := need(t, "systemd-analyze")
	unit, err := os.ReadFile(filepath.Join("systemd", "lexiscore-gateway.service"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	for _, want := range []string{"DynamicUser=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "ProtectSystem=strict",
		"StateDirectory=lexiscore-gateway", "ExecReload=/usr/local/bin/gateway reload", "NoNewPrivileges=yes"} {
		if !strings.Contains(text, want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	dir := t.TempDir()
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	text = strings.ReplaceAll(text, "/usr/local/bin/gateway", bin)
	path := filepath.Join(dir, "lexiscore-gateway.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", path)
	out, err := cmd.CombinedOutput()
	// verify also reports problems of other units on this machine that the
	// unit pulls in; only lines about ours count.
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "lexiscore-gateway") {
			ours = append(ours, line)
		}
	}
	if len(ours) > 0 || (err != nil && len(out) == 0) {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestComposeConfig validates the compose stack with docker-compose: it
// needs the two secrets, and has every service the stack promises.
func TestComposeConfig(t *testing.T) {
	compose := need(t, "docker-compose")
	dir := "compose"
	secret := filepath.Join(t.TempDir(), "signing")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"GATEWAY_JWT_SECRET=test", "GATEWAY_SIGNING_SECRET_FILE=" + secret}
	// --services validates the whole file, as config does.
	services := strings.Fields(run(t, dir, env, compose, "-f", "compose.yaml", "config", "--services"))
	for _, want := range []string{"gateway-1", "gateway-2", "redis", "scoring", "prometheus", "alertmanager", "grafana", "tempo", "pyroscope"} {
		if !slices.Contains(services, want) {
			t.Errorf("the compose stack has no %s service (has %v)", want, services)
		}
	}

	cmd := exec.Command(compose, "-f", "compose.yaml", "config", "-q")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GATEWAY_JWT_SECRET=", "GATEWAY_SIGNING_SECRET_FILE="+secret)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "GATEWAY_JWT_SECRET") {
		t.Errorf("the stack is valid without GATEWAY_JWT_SECRET: %v\n%s", err, out)
	}
}

// TestContainerImage builds the image with deploy/build-image.sh (podman,
// from a binary built here) and inspects it: a static binary, non-root,
// the gateway as entrypoint, the ports, the OCI labels, the health check,
// the volume, and a size close to the binary's.
func TestContainerImage(t *testing.T) {
	podman := need(t, "podman")
	// Its own tag and no shared layer cache: another test run building at
	// the same time (a second clone, CI beside a developer) must not remove
	// or reuse this one's layers.
	name := fmt.Sprintf("localhost/lexiscore-gateway:test-%d", os.Getpid())
	run(t, "..", []string{"IMAGE_BUILD_FLAGS=--layers=false"}, "deploy/build-image.sh", name)
	t.Cleanup(func() { _ = exec.Command(podman, "rmi", "-f", name).Run() })

	f, err := elf.Open(filepath.Join("..", "bin", "image", "gateway"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 || slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
		t.Errorf("the image's binary is not static: it needs %v", libs)
	}
	bin, _ := os.Stat(filepath.Join("..", "bin", "image", "gateway"))

	var images []struct {
		Size   int64
		Config struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			ExposedPorts map[string]struct{}
			Labels       map[string]string
			Volumes      map[string]struct{}
		}
		// podman puts the Docker-format health check beside Config.
		Healthcheck struct{ Test []string }
	}
	if err := json.Unmarshal([]byte(run(t, "", nil, podman, "image", "inspect", name)), &images); err != nil || len(images) != 1 {
		t.Fatalf("podman image inspect: %v", err)
	}
	img := images[0]
	cfg := img.Config
	t.Logf("image %d bytes, binary %d bytes", img.Size, bin.Size())
	if cfg.User == "" || strings.HasPrefix(cfg.User, "0") || strings.HasPrefix(cfg.User, "root") {
		t.Errorf("user %q: the image must not run as root", cfg.User)
	}
	if !slices.Equal(cfg.Entrypoint, []string{"/usr/bin/gateway"}) || !slices.Contains(cfg.Cmd, "/etc/gateway/Caddyfile") {
		t.Errorf("entrypoint %v, cmd %v", cfg.Entrypoint, cfg.Cmd)
	}
	for _, p := range []string{"8080/tcp", "8443/tcp", "9180/tcp"} {
		if _, ok := cfg.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed (%v)", p, cfg.ExposedPorts)
		}
	}
	rev := strings.TrimSpace(run(t, "..", nil, "git", "rev-parse", "HEAD"))
	for label, want := range map[string]string{
		"org.opencontainers.image.revision": rev,
		"org.opencontainers.image.source":   "https://github.com/lexiscore/gateway",
	} {
		if cfg.Labels[label] != want {
			t.Errorf("label %s = %q, want %q", label, cfg.Labels[label], want)
		}
	}
	if cfg.Labels["org.opencontainers.image.version"] == "" {
		t.Errorf("no version label: %v", cfg.Labels)
	}
	if !slices.Equal(img.Healthcheck.Test, []string{"CMD", "/usr/bin/gateway", "healthcheck"}) {
		t.Errorf("health check %v", img.Healthcheck.Test)
	}
	if _, ok := cfg.Volumes["/data"]; !ok {
		t.Errorf("no volume at /data: %v", cfg.Volumes)
	}
	// Nothing but the binary, the CA certificates and the Caddyfile.
	if img.Size > bin.Size()+2<<20 {
		t.Errorf("the image is %d bytes, the binary %d: more than the binary and certificates", img.Size, bin.Size())
	}
}
