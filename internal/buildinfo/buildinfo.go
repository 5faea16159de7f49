// Package buildinfo says which build of the gateway runs: in `gateway
// version` and in the gateway_build_info metric, so that an operator can
// tell from a scrape which commit every instance runs.
package buildinfo

import (
	"cmp"
	"fmt"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// unknown stands for what the binary does not record (a build without
// module or VCS information).
const unknown = "unknown"

// Info identifies a build of the gateway.
type Info struct {
	// Version is the main module's version: a tag, or the pseudo-version Go
	// derives from the commit ("+dirty" for uncommitted changes).
	Version string
	// Revision is the VCS commit the binary was built from.
	Revision string
	// GoVersion is the Go toolchain that built it.
	GoVersion string
}

// Read returns the running binary's Info.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	if bi == nil {
		return Info{Version: unknown, Revision: unknown, GoVersion: unknown}
	}
	var revision, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	version := bi.Main.Version
	if version == "(devel)" {
		version = ""
	}
	return Info{
		Version:   cmp.Or(version, unknown),
		Revision:  cmp.Or(revision+modified, unknown),
		GoVersion: cmp.Or(bi.GoVersion, unknown),
	}
}

// String is the first line of `gateway version`.
func (i Info) String() string {
	return fmt.Sprintf("LexiScore Gateway %s (revision %s, %s)", i.Version, i.Revision, i.GoVersion)
}

// Gauge is gateway_build_info: 1, labelled with the running build.
var Gauge = newGauge(Read())

func newGauge(i Info) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "gateway_build_info",
		Help:        "Always 1; the labels say which build runs: the gateway's version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": i.Revision, "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}
