package logbuffer

import (
	"io"
	"os"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// BenchmarkLogLine logs an access-log-sized JSON line from parallel
// goroutines into a pipe (what stdout is under a container runtime), written
// directly as Caddy does by default, and through the buffered writer with the
// shipped settings. Compare the two in the same run:
//
//	go test -run '^$' -bench LogLine -benchmem ./modules/logbuffer
func BenchmarkLogLine(b *testing.B) {
	for _, bc := range []struct {
		name string
		open func(io.WriteCloser) io.WriteCloser
	}{
		{"direct", func(w io.WriteCloser) io.WriteCloser { return w }},
		{"buffered", func(w io.WriteCloser) io.WriteCloser {
			return newWriter(w, "bench", defaultFlushInterval, defaultFlushSize, defaultMaxBuffer)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, w, err := os.Pipe()
			if err != nil {
				b.Fatal(err)
			}
			drained := make(chan struct{})
			go func() { _, _ = io.Copy(io.Discard, r); close(drained) }()
			out := bc.open(w)
			enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
			logger := zap.New(zapcore.NewCore(enc, zapcore.AddSync(out), zapcore.InfoLevel))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					logger.Info("handled request",
						zap.String("request_id", "9f1c2d3e-4b5a-6789-abcd-ef0123456789"),
						zap.String("traceID", "0af7651916cd43dd8448eb211c80319c"),
						zap.String("user_id", "bench-user"), zap.String("route", "read_scores"),
						zap.String("uri", "/v1/scores/3f2a9c1e-7b4d-4e8f-9a6b-1c2d3e4f5a6b"),
						zap.Int("status", 200), zap.Duration("duration", 1234*time.Microsecond),
						zap.String("user_agent", "wrk"), zap.Int("size", 412))
				}
			})
			b.StopTimer()
			_ = out.Close()
			_ = w.Close()
			<-drained
		})
	}
}
