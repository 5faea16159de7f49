package main

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestNameTheService(t *testing.T) {
	cases := []struct {
		name, serviceName, resourceAttrs, want string
	}{
		{name: "nothing set", want: "lexiscore-gateway"},
		{name: "OTEL_SERVICE_NAME wins", serviceName: "edge-eu", want: "edge-eu"},
		{name: "service.name in the resource attributes wins", resourceAttrs: "deployment.environment=prod,service.name=edge", want: ""},
		{name: "other resource attributes", resourceAttrs: "deployment.environment=prod", want: "lexiscore-gateway"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_SERVICE_NAME", tc.serviceName)
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", tc.resourceAttrs)
			nameTheService()
			if got := os.Getenv("OTEL_SERVICE_NAME"); got != tc.want {
				t.Errorf("OTEL_SERVICE_NAME = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGCForAProxy(t *testing.T) {
	cases := []struct {
		name, gogc string
		set        bool
		want       int
	}{
		{name: "GOGC unset: the proxy default", want: proxyGOGC},
		{name: "GOGC set: left to the runtime", gogc: "50", set: true, want: 123},
		{name: "GOGC=off: left to the runtime", gogc: "off", set: true, want: 123},
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.gogc)
			if !tc.set {
				os.Unsetenv("GOGC")
			}
			debug.SetGCPercent(123) // stands for what the runtime took from GOGC
			gcForAProxy()
			if got := debug.SetGCPercent(123); got != tc.want {
				t.Errorf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
}
