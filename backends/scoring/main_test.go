package main

import (
	"bufio"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runMainEnv makes the test binary run main instead of the tests, so that
// TestMainProcess can check the command as it is deployed: flags,
// environment, startup line, signal handling and exit status.
const runMainEnv = "SCORING_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr bool
	}{
		{"defaults", nil, nil, config{addr: defaultAddr, adminAddr: defaultAdminAddr}, false},
		{"env", nil, map[string]string{"SCORING_ADDR": ":1", "SCORING_ADMIN_ADDR": ":2"}, config{addr: ":1", adminAddr: ":2"}, false},
		{"empty env", nil, map[string]string{"SCORING_ADDR": ""}, config{addr: defaultAddr, adminAddr: defaultAdminAddr}, false},
		{"flags", []string{"-addr", ":3", "-admin-addr=:4"}, nil, config{addr: ":3", adminAddr: ":4"}, false},
		{"flags over env", []string{"-addr", ":3"}, map[string]string{"SCORING_ADDR": ":1", "SCORING_ADMIN_ADDR": ":2"}, config{addr: ":3", adminAddr: ":2"}, false},
		{"unknown flag", []string{"-port", "1"}, nil, config{}, true},
		{"extra argument", []string{"serve"}, nil, config{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			got, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, &out)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseConfig = %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
			if tc.wantErr && !strings.Contains(out.String(), "Usage") {
				t.Errorf("output %q, want the usage", out.String())
			}
		})
	}
	if _, err := parseConfig([]string{"-h"}, func(string) string { return "" }, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("parseConfig(-h) = %v, want flag.ErrHelp", err)
	}
}

// TestMainProcess runs the command in a child process, with the API address
// from the environment and the admin address from a flag, and stops it with
// SIGTERM.
func TestMainProcess(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-admin-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "SCORING_ADDR=127.0.0.1:0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	m := startupLine.FindStringSubmatch(line)
	if err != nil || m == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("startup line = %q (%v), want %v; stderr:\n%s", line, err, startupLine, stderr.String())
	}
	for _, url := range []string{"http://" + m[1] + "/healthz", "http://" + m[2] + "/healthz"} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", url, resp.StatusCode)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var rest []byte
	done := make(chan error, 1)
	go func() {
		// Wait closes stdout, so it may only run once stdout is drained.
		rest, _ = io.ReadAll(out)
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(waitTimeout):
		_ = cmd.Process.Kill()
		t.Fatal("no exit after SIGTERM")
	}
	if len(rest) > 0 {
		t.Errorf("stdout after the startup line: %q, want nothing", rest)
	}
	if !strings.Contains(stderr.String(), `"msg":"scoring backend stopped"`) {
		t.Errorf("stderr = %s, want JSON logs", stderr.String())
	}
}
