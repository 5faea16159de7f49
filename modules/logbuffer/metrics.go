package logbuffer

import "github.com/prometheus/client_golang/prometheus"

// droppedLines counts log lines that never reached their destination:
// buffer_full (the destination fell max_buffer behind) or write_error (it
// refused the write). output is the destination as configured (stdout,
// stderr, a file path), so the label is bounded by the config.
var droppedLines = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "gateway_log_dropped_lines_total",
	Help: "Log lines the buffered log writer dropped, by destination and reason.",
}, []string{"output", "reason"})
