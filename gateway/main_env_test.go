package main

import (
	"os"
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
