// Package test checks the Helm chart offline: helm lint --strict, helm
// template with the default and the production values, and every rendered
// object decoded strictly into its Kubernetes API type. It is a module of its
// own so that Helm's dependencies stay out of the gateway's go.mod.
package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const chartDir = "../lexiscore-gateway"

// repo is the repository root, where the chart's files/ links point.
var repo = filepath.Join("..", "..", "..")

// kubeVersion is the cluster version the chart is rendered for: the oldest
// it supports (Chart.yaml's kubeVersion).
var kubeVersion = &chartutil.KubeVersion{Version: "v1.30.0", Major: "1", Minor: "30"}

func values(t *testing.T, file string) map[string]any {
	t.Helper()
	if file == "" {
		return map[string]any{}
	}
	vals, err := chartutil.ReadValuesFile(filepath.Join(chartDir, file))
	if err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
	return vals
}

var valueSets = map[string]string{"default values": "", "production values": "values-production.yaml"}

func TestLintStrict(t *testing.T) {
	for name, file := range valueSets {
		t.Run(name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.KubeVersion = kubeVersion
			res := lint.Run([]string{chartDir}, values(t, file))
			for _, msg := range res.Messages {
				t.Logf("lint: %s", msg)
			}
			if len(res.Errors) > 0 || action.HasWarningsOrErrors(res) {
				t.Fatalf("helm lint --strict: %v", res.Errors)
			}
		})
	}
}

// render is helm template: the manifests of an install, rendered offline.
func render(t *testing.T, file string) map[string]string {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = "gw", "scoring"
	install.KubeVersion = kubeVersion
	rel, err := install.Run(chrt, values(t, file))
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return releaseutil.SplitManifests(rel.Manifest)
}

// decoder decodes YAML into the registered Go types, failing on unknown and
// duplicate fields.
func decoder(t *testing.T) runtime.Decoder {
	t.Helper()
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Yaml: true, Strict: true})
}

func TestTemplateDecodesStrictly(t *testing.T) {
	for name, file := range valueSets {
		t.Run(name, func(t *testing.T) {
			dec := decoder(t)
			kinds := map[string][]runtime.Object{}
			for name, doc := range render(t, file) {
				obj, gvk, err := dec.Decode([]byte(doc), nil, nil)
				if err != nil {
					t.Fatalf("%s does not decode strictly: %v\n%s", name, err, doc)
				}
				kinds[gvk.Kind] = append(kinds[gvk.Kind], obj)
			}
			for _, want := range []string{"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} {
				if len(kinds[want]) == 0 {
					t.Errorf("no %s rendered (have %v)", want, keys(kinds))
				}
			}
			if len(kinds["Secret"]) > 0 {
				t.Errorf("the chart renders a Secret: secrets are referenced, never values")
			}
			checkDeployment(t, kinds["Deployment"][0].(*appsv1.Deployment))
			checkCaddyfile(t, kinds["ConfigMap"])
			if file != "" {
				checkMonitoring(t, kinds)
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// checkDeployment checks the probes, the stop sequence and that the pod
// runs unprivileged.
func checkDeployment(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes: liveness %+v, readiness %+v; want /healthz and /readyz", c.LivenessProbe, c.ReadinessProbe)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("no preStop sleep: %+v", c.Lifecycle)
	}
	// The kubelet must not kill a drain that keeps its word: preStop, the
	// gateway's shutdown delay and grace period all fit.
	need := c.Lifecycle.PreStop.Sleep.Seconds
	for _, e := range c.Env {
		if e.Name == "GATEWAY_SHUTDOWN_DELAY" || e.Name == "GATEWAY_GRACE_PERIOD" {
			d, err := time.ParseDuration(e.Value)
			if err != nil {
				t.Fatalf("%s=%q: %v", e.Name, e.Value, err)
			}
			need += int64(d.Seconds())
		}
	}
	if got := pod.TerminationGracePeriodSeconds; got == nil || *got <= need {
		t.Errorf("terminationGracePeriodSeconds %s, want more than preStop + shutdown delay + grace period = %ds", fmtSeconds(got), need)
	}
	if pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("the pod must run as non-root with a read-only root: %+v %+v", pod.SecurityContext, c.SecurityContext)
	}
	for _, e := range c.Env {
		if strings.Contains(e.Name, "SECRET") && !strings.HasSuffix(e.Name, "_FILE") && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("%s is not taken from a Secret", e.Name)
		}
	}
}

func fmtSeconds(s *int64) string {
	if s == nil {
		return "unset"
	}
	return fmt.Sprintf("%ds", *s)
}

// checkCaddyfile: the ConfigMap holds the repository's Caddyfile, byte for byte.
func checkCaddyfile(t *testing.T, cms []runtime.Object) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join(repo, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range cms {
		if got, ok := o.(*corev1.ConfigMap).Data["Caddyfile"]; ok {
			if got != strings.TrimRight(string(want), "\n") {
				t.Errorf("the ConfigMap's Caddyfile differs from the repository's")
			}
			return
		}
	}
	t.Errorf("no ConfigMap holds the Caddyfile")
}

// checkMonitoring: the rules are alerts/rules, group for group and rule for
// rule, and every dashboard is a ConfigMap for Grafana's sidecar, unchanged.
func checkMonitoring(t *testing.T, kinds map[string][]runtime.Object) {
	t.Helper()
	if len(kinds["ServiceMonitor"]) != 1 {
		t.Errorf("%d ServiceMonitors, want 1", len(kinds["ServiceMonitor"]))
	}
	files, _ := filepath.Glob(filepath.Join(repo, "alerts", "rules", "*.yml"))
	var want, got []monitoringv1.RuleGroup
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var spec monitoringv1.PrometheusRuleSpec
		if err := yaml.UnmarshalStrict(b, &spec); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want = append(want, spec.Groups...)
	}
	for _, o := range kinds["PrometheusRule"] {
		got = append(got, o.(*monitoringv1.PrometheusRule).Spec.Groups...)
	}
	sortGroups := func(g []monitoringv1.RuleGroup) {
		slices.SortFunc(g, func(a, b monitoringv1.RuleGroup) int { return strings.Compare(a.Name, b.Name) })
	}
	sortGroups(want)
	sortGroups(got)
	wantY, _ := yaml.Marshal(want)
	gotY, _ := yaml.Marshal(got)
	if len(want) == 0 || !bytes.Equal(wantY, gotY) {
		t.Errorf("the PrometheusRules are not alerts/rules: %d groups, want %d", len(got), len(want))
	}

	dashboards, _ := filepath.Glob(filepath.Join(repo, "dashboards", "*.json"))
	found := 0
	for _, o := range kinds["ConfigMap"] {
		cm := o.(*corev1.ConfigMap)
		if cm.Labels["grafana_dashboard"] != "1" {
			continue
		}
		for _, d := range dashboards {
			b, _ := os.ReadFile(d)
			if got, ok := cm.Data[filepath.Base(d)]; ok && got == strings.TrimRight(string(b), "\n") {
				found++
			}
		}
	}
	if len(dashboards) == 0 || found != len(dashboards) {
		t.Errorf("%d of the %d dashboards are ConfigMaps for Grafana's sidecar", found, len(dashboards))
	}
}
