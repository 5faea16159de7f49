package buildinfo

import (
	"runtime/debug"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	cases := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"a tagged release", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}, Settings: vcs("0123abcd", "false")},
			"LexiScore Gateway v1.4.0 (revision 0123abcd, go1.26.8)"},
		{"a build from a checkout with changes", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261207210000-0123abcd4567+dirty"}, Settings: vcs("0123abcd4567", "true")},
			"LexiScore Gateway v0.0.0-20261207210000-0123abcd4567+dirty (revision 0123abcd4567+modified, go1.26.8)"},
		{"no VCS information", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"LexiScore Gateway unknown (revision unknown, go1.26.8)"},
		{"no build information", nil, "LexiScore Gateway unknown (revision unknown, unknown)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuildInfo(tc.bi).String(); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGaugeLabelsTheBuild(t *testing.T) {
	i := Info{Version: "v1.4.0", Revision: "0123abcd", GoVersion: "go1.26.8"}
	v, ok := testkit.Series(t, newGauge(i), "gateway_build_info", map[string]string{"version": "v1.4.0", "revision": "0123abcd", "goversion": "go1.26.8"})
	if !ok || v != 1 {
		t.Fatalf("gateway_build_info = %v (found %v), want 1 with the build's labels", v, ok)
	}
}
