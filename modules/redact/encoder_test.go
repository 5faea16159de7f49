package redact

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The shipped Caddyfile's access-log fields.
const accessLogFields = `{
	wrap json
	fields {
		resp_headers delete
		request>tls delete
		request>headers>Authorization replace REDACTED
		request>headers>Cookie replace REDACTED
		request>headers>X-Api-Key replace REDACTED
		request>headers>Proxy-Authorization replace REDACTED
		resp_headers>Set-Cookie replace REDACTED
		request>uri query_secrets
	}
}`

// encoders returns Caddy's filter encoder and this package's, configured
// from the same Caddyfile tokens and provisioned.
func encoders(t testing.TB, fields string) (filter, redact zapcore.Encoder) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	fe := &logging.FilterEncoder{}
	if err := fe.UnmarshalCaddyfile(caddyfile.NewTestDispenser("filter " + fields)); err != nil {
		t.Fatal(err)
	}
	re := &Encoder{}
	if err := re.UnmarshalCaddyfile(caddyfile.NewTestDispenser("redact " + fields)); err != nil {
		t.Fatal(err)
	}
	if err := fe.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := re.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return fe, re
}

// accessRequest is a request carrying a credential everywhere the access
// line could show one.
func accessRequest() *http.Request {
	r := httptest.NewRequest("GET", "https://gw.test/v1/users/u1/scores?limit=5&access_token=s3cr3t-query&api_key=s3cr3t-key2", nil)
	r.Header.Set("Authorization", "Bearer s3cr3t-jwt")
	r.Header.Set("Cookie", "session=s3cr3t-cookie")
	r.Header.Set("X-Api-Key", "s3cr3t-apikey")
	r.Header.Set("Proxy-Authorization", "Basic s3cr3t-proxy")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "wrk")
	r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, ServerName: "gw.test", HandshakeComplete: true}
	return r
}

// accessFields are the access line's own fields as Caddy's logRequest
// writes them.
func accessFields() []zapcore.Field {
	resp := http.Header{"Set-Cookie": {"sid=s3cr3t-setcookie"}, "Content-Type": {"application/json"}}
	return []zapcore.Field{
		zap.Int("bytes_read", 0),
		zap.String("user_id", "u1"),
		zap.Duration("duration", 1234*time.Microsecond),
		zap.Int("size", 412),
		zap.Int("status", 200),
		zap.Object("resp_headers", caddyhttp.LoggableHTTPHeader{Header: resp, ShouldLogCredentials: true}),
	}
}

// line writes one access line through enc, with the request in the
// logger's context (as Caddy adds it) or among the line's own fields.
func line(t testing.TB, enc zapcore.Encoder, inContext bool, secrets ...string) map[string]any {
	t.Helper()
	var out bytes.Buffer
	logger := zap.New(zapcore.NewCore(enc, zapcore.AddSync(&out), zapcore.InfoLevel))
	req := zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: accessRequest(), ShouldLogCredentials: true})
	if inContext {
		logger.With(req).Info("handled request", accessFields()...)
	} else {
		logger.Info("handled request", append([]zapcore.Field{req}, accessFields()...)...)
	}
	for _, secret := range secrets {
		if strings.Contains(out.String(), secret) {
			t.Errorf("a credential in the line: %s", out.String())
		}
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	delete(m, "ts")
	return m
}

func TestEncoderWritesWhatTheFilterEncoderWrites(t *testing.T) {
	for _, inContext := range []bool{true, false} {
		filter, redact := encoders(t, accessLogFields)
		want, got := line(t, filter, inContext, "s3cr3t"), line(t, redact, inContext, "s3cr3t")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("request in context %v:\n got %v\nwant %v", inContext, got, want)
		}
		req, _ := got["request"].(map[string]any)
		headers, _ := req["headers"].(map[string]any)
		for _, h := range []string{"Authorization", "Cookie", "X-Api-Key", "Proxy-Authorization"} {
			if v := headers[h]; v != "REDACTED" {
				t.Errorf("request in context %v: %s is %v, want REDACTED", inContext, h, v)
			}
		}
		if _, ok := req["tls"]; ok {
			t.Errorf("request in context %v: tls not deleted", inContext)
		}
		if _, ok := got["resp_headers"]; ok {
			t.Errorf("request in context %v: resp_headers not deleted", inContext)
		}
		if uri, _ := req["uri"].(string); !strings.HasSuffix(uri, "/v1/users/u1/scores?access_token=REDACTED&api_key=REDACTED&limit=5") {
			t.Errorf("request in context %v: uri %v", inContext, uri)
		}
	}
}

// A filter on a field at the top of the line, or on a whole object, applies
// as in the filter encoder; fields with no filter are left alone.
func TestEncoderTopLevelFilters(t *testing.T) {
	filter, redact := encoders(t, `{
		fields {
			user_id replace anon
			request delete
			resp_headers>Content-Type replace x
		}
	}`)
	for _, inContext := range []bool{true, false} {
		want, got := line(t, filter, inContext), line(t, redact, inContext)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("request in context %v:\n got %v\nwant %v", inContext, got, want)
		}
		if got["user_id"] != "anon" || got["request"] != nil || got["status"] != float64(200) {
			t.Errorf("request in context %v: %v", inContext, got)
		}
	}
}

// BenchmarkAccessLine writes the shipped access line (request in the
// logger's context, as Caddy adds it) through Caddy's filter encoder and
// through this package's; compare allocs/op in the same run:
//
//	go test -run '^$' -bench AccessLine -benchmem ./modules/redact
func BenchmarkAccessLine(b *testing.B) {
	filter, redact := encoders(b, accessLogFields)
	for _, bc := range []struct {
		name string
		enc  zapcore.Encoder
	}{{"filter", filter}, {"redact", redact}} {
		b.Run(bc.name, func(b *testing.B) {
			logger := zap.New(zapcore.NewCore(bc.enc, zapcore.AddSync(discard{}), zapcore.InfoLevel))
			r := accessRequest()
			fields := accessFields()
			b.ReportAllocs()
			for b.Loop() {
				logger.With(zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: r})).Info("handled request", fields...)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
