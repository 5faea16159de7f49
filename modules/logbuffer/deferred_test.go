package logbuffer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/caddytest"
)

type pair struct{ a, b string }

func (p pair) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("a", p.a)
	enc.AddString("b", p.b)
	return nil
}

func provisionedJSON(t testing.TB) (zapcore.Encoder, *Deferred) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	plain := &logging.JSONEncoder{}
	d := &Deferred{}
	for _, p := range []caddy.Provisioner{plain, d} {
		if err := p.Provision(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return plain, d
}

// The deferred encoder writes every line byte for byte as the encoder it
// wraps, whatever the context fields (With, nested With, namespaces).
func TestDeferredWritesWhatItWraps(t *testing.T) {
	plain, deferred := provisionedJSON(t)
	ent := zapcore.Entry{Level: zapcore.InfoLevel, Time: time.Unix(1700000000, 0), LoggerName: "http.log.access", Message: "handled request"}
	cases := []struct {
		name      string
		with      [][]zap.Field
		lineField []zap.Field
	}{
		{"no context", nil, []zap.Field{zap.Int("status", 200)}},
		{"one With", [][]zap.Field{{zap.Object("request", pair{"GET", "/v1"}), zap.String("upstream", "127.0.0.1:9001")}}, []zap.Field{zap.Duration("duration", time.Millisecond)}},
		{"nested With", [][]zap.Field{{zap.String("a", "1")}, {zap.Int64("b", 2), zap.Bool("c", true)}}, nil},
		{"every kind", [][]zap.Field{{
			zap.Binary("bin", []byte{1, 2}), zap.ByteString("bs", []byte("x")), zap.Complex128("c128", 1+2i),
			zap.Float64("f", 1.5), zap.Float32("f32", 2.5), zap.Int32("i32", 3), zap.Int16("i16", 4), zap.Int8("i8", 5),
			zap.Uint("u", 6), zap.Uint64("u64", 7), zap.Uint32("u32", 8), zap.Uint16("u16", 9), zap.Uint8("u8", 10),
			zap.Uintptr("up", 11), zap.Time("t", time.Unix(1, 0)), zap.Strings("arr", []string{"x", "y"}),
			zap.Any("any", map[string]int{"k": 1}), zap.Error(errors.New("boom")),
		}}, nil},
		{"namespace", [][]zap.Field{{zap.String("outer", "o"), zap.Namespace("ns"), zap.String("inner", "i")}}, []zap.Field{zap.String("line", "l")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, got := plain.Clone(), deferred.Clone()
			for _, fields := range tc.with {
				want, got = want.Clone(), got.Clone()
				for _, f := range fields {
					f.AddTo(want)
					f.AddTo(got)
				}
			}
			wb, err := want.EncodeEntry(ent, tc.lineField)
			if err != nil {
				t.Fatal(err)
			}
			gb, err := got.EncodeEntry(ent, tc.lineField)
			if err != nil {
				t.Fatal(err)
			}
			if wb.String() != gb.String() {
				t.Errorf("deferred wrote\n%s\njson writes\n%s", gb, wb)
			}
		})
	}
}

// A clone's fields are its own: adding to one never shows in the other.
func TestDeferredClonesAreIndependent(t *testing.T) {
	_, base := provisionedJSON(t)
	parent := base.Clone()
	parent.AddString("shared", "s")
	a, b := parent.Clone(), parent.Clone()
	a.AddString("only", "a")
	b.AddString("only", "b")
	ent := zapcore.Entry{Time: time.Unix(0, 0), Message: "m"}
	for enc, want := range map[zapcore.Encoder]string{a: `"only":"a"`, b: `"only":"b"`} {
		buf, err := enc.EncodeEntry(ent, nil)
		if err != nil {
			t.Fatal(err)
		}
		if line := buf.String(); !strings.Contains(line, want) || strings.Count(line, `"only"`) != 1 || !strings.Contains(line, `"shared":"s"`) {
			t.Errorf("line %s, want %s once and the shared field", line, want)
		}
	}
}

// Through Caddy: a log with `format deferred` writes its lines with the
// request object and the access log is unchanged.
func TestDeferredInCaddy(t *testing.T) {
	dir := t.TempDir()
	accessLog, otherLog := filepath.Join(dir, "access.log"), filepath.Join(dir, "other.log")
	in := caddytest.Start(t, fmt.Sprintf(`log other {
		output file %s
		format deferred {
			wrap json
		}
		include http.log.access
	}`, otherLog), fmt.Sprintf(`
http://127.0.0.1:{http_port} {
	log {
		output file %s
		format json
	}
	respond /hello "hi" 200
}`, accessLog))
	resp, err := http.Get(in.URL("/hello?x=1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	testkit.Eventually(t, "the line in both logs", func() error {
		for _, path := range []string{accessLog, otherLog} {
			found := false
			for _, line := range caddytest.ReadJSONLines(t, path) {
				req, _ := line["request"].(map[string]any)
				if line["msg"] == "handled request" && req["uri"] == "/hello?x=1" && line["status"] == float64(200) {
					found = true
				}
			}
			if !found {
				raw, _ := os.ReadFile(path)
				return fmt.Errorf("%s has no line of the request: %s", path, raw)
			}
		}
		return nil
	})
}

// BenchmarkRequestLoggerWith is what each log of Caddy's HTTP tee pays per
// request for a line it does not write: the request added with With, then
// a Check that forces it.
// go test -run '^$' -bench RequestLoggerWith -benchmem ./modules/logbuffer
func BenchmarkRequestLoggerWith(b *testing.B) {
	plain, deferred := provisionedJSON(b)
	req, _ := http.NewRequest(http.MethodGet, "https://localhost/v1/scores/sc_1?limit=5", nil)
	for k, v := range map[string]string{"Accept": "application/json", "Authorization": "Bearer x", "User-Agent": "wrk", "X-Request-Id": "0b6f0c3e-7b7e-4c1e-9d43-1c6a2f0f9e11", "Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"} {
		req.Header.Set(k, v)
	}
	field := zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: req})
	for _, enc := range []struct {
		name string
		enc  zapcore.Encoder
	}{{"json", plain}, {"deferred", deferred}} {
		b.Run(enc.name, func(b *testing.B) {
			logger := zap.New(otherLog{zapcore.NewCore(enc.enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel)})
			b.ReportAllocs()
			for b.Loop() {
				l := logger.WithLazy(field)
				if ce := l.Check(zapcore.InfoLevel, "handled request"); ce != nil {
					b.Fatal("written")
				}
			}
		})
	}
}

// otherLog is a core that takes no line, like Caddy's filteringCore of a log
// whose include rules name other loggers.
type otherLog struct{ zapcore.Core }

func (o otherLog) With(fields []zapcore.Field) zapcore.Core { return otherLog{o.Core.With(fields)} }

func (otherLog) Check(_ zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry { return ce }
