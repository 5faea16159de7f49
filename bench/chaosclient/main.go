// Command chaosclient is the load generator and accountant of bench/chaos.sh,
// the fault matrix against the real binary. wrk counts requests but cannot say
// which ones were lost across a reload or when the first success came after a
// fault, so this client writes one line per request (when it started, how
// long it took, what came back) and reports on any time slice of that log:
//
//	chaosclient load -url URL [-method M] [-c N] (-d DURATION | -n COUNT) -log FILE ...
//	chaosclient report -log FILE [-from T] [-to T] [-recovery-from T] [-want 'lost==0,...']
//	chaosclient metric -url METRICS_URL NAME [label=value ...]
//
// Times T are Unix seconds with a fraction, as `date +%s.%N` prints them. The
// client is Go's net/http with its defaults (HTTP/2 when the server offers it,
// -http1 to pin HTTP/1.1): what the gateway promises a standard client is what
// it measures.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: chaosclient load|report|metric [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "load":
		err = runLoad(os.Args[2:])
	case "report":
		err = runReport(os.Args[2:], os.Stdout)
	case "metric":
		err = runMetric(os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q: want load, report or metric", os.Args[1])
	}
	if errors.Is(err, errUnmet) {
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaosclient:", err)
		os.Exit(1)
	}
}
