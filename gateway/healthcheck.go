package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/lexiscore/gateway/internal/cli"
)

// A container image from scratch has no shell and no curl: its health check
// is this command, run inside the container.
func init() {
	cli.Register(caddycmd.Command{
		Name:  "healthcheck",
		Usage: "[--url <url>] [--timeout <duration>]",
		Short: "Exits 0 when the running gateway's /healthz answers 200",
		Long: `
Asks the running gateway whether it is alive: GET /healthz on the private
metrics address (GATEWAY_METRICS_ADDR, default 127.0.0.1:9180), plain HTTP,
so that no certificate or host name is involved. Exits 1 on anything but
200 within --timeout. For container health checks (the image has no shell).`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("url", "", "URL to check (default http://$GATEWAY_METRICS_ADDR/healthz)")
			cmd.Flags().Duration("timeout", 3*time.Second, "how long to wait for the answer")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdHealthcheck)
		},
	})
}

func cmdHealthcheck(fl caddycmd.Flags) (int, error) {
	url := fl.String("url")
	if url == "" {
		addr := os.Getenv("GATEWAY_METRICS_ADDR")
		if addr == "" {
			addr = "127.0.0.1:9180"
		}
		url = "http://" + addr + "/healthz"
	}
	client := &http.Client{Timeout: fl.Duration("timeout")}
	resp, err := client.Get(url)
	if err != nil {
		return 1, fmt.Errorf("health check: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return 1, fmt.Errorf("health check: GET %s: %s", url, resp.Status)
	}
	return 0, nil
}
