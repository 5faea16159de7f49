package main

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// What became of a request.
const (
	outcomeOK      = "ok"      // an answer, whatever its status
	outcomeError   = "error"   // no answer: refused, reset, closed under it
	outcomeTimeout = "timeout" // no answer within the client's timeout
)

// record is one request of the log: one line, "start_ns duration_ns status
// outcome problem", problem "-" when the answer was not a problem document.
type record struct {
	start    time.Time
	duration time.Duration
	status   int
	outcome  string
	problem  string
}

func (r record) String() string {
	return fmt.Sprintf("%d %d %d %s %s", r.start.UnixNano(), r.duration.Nanoseconds(), r.status, r.outcome, cmp.Or(r.problem, "-"))
}

func parseRecord(line string) (record, error) {
	f := strings.Fields(line)
	if len(f) != 5 {
		return record{}, fmt.Errorf("request log line %q: want 5 fields", line)
	}
	var n [3]int64
	for i := range n {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return record{}, fmt.Errorf("request log line %q: field %d: %w", line, i+1, err)
		}
		n[i] = v
	}
	r := record{start: time.Unix(0, n[0]), duration: time.Duration(n[1]), status: int(n[2]), outcome: f[3]}
	if f[4] != "-" {
		r.problem = f[4]
	}
	return r, nil
}

func readRecords(r io.Reader) ([]record, error) {
	var recs []record
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		rec, err := parseRecord(sc.Text())
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	return recs, sc.Err()
}

// summary holds the figures of a slice of the log, by the names -want uses.
type summary struct {
	values   map[string]float64
	codes    map[int]int
	problems map[string]int
}

// summarize counts the requests that started in [from, to) (zero times:
// unbounded); with recoveryFrom set, recover_s is the time from it to the end
// of the first 2xx answer to a request started at or after it, over the
// whole log.
func summarize(recs []record, from, to, recoveryFrom time.Time) summary {
	return summarizeAt(recs, from, to, recoveryFrom, time.Time{})
}

// summarizeAt is summarize that, with at set, also counts in_flight_at: the
// requests of the slice sent before it and not answered by then.
func summarizeAt(recs []record, from, to, recoveryFrom, at time.Time) summary {
	s := summary{values: map[string]float64{"errors": 0, "timeouts": 0}, codes: map[int]int{}, problems: map[string]int{}}
	var durations []time.Duration
	var answers, nonOK, problems int
	for _, r := range recs {
		if (!from.IsZero() && r.start.Before(from)) || (!to.IsZero() && !r.start.Before(to)) {
			continue
		}
		durations = append(durations, r.duration)
		if !at.IsZero() && r.start.Before(at) && r.start.Add(r.duration).After(at) {
			s.values["in_flight_at"]++
		}
		switch r.outcome {
		case outcomeOK:
			answers++
			s.codes[r.status]++
			if r.status/100 != 2 {
				nonOK++
				if r.problem != "" {
					problems++
					s.problems[r.problem]++
				}
			}
		case outcomeTimeout:
			s.values["timeouts"]++
		default:
			s.values["errors"]++
		}
	}
	sent := len(durations)
	s.values["sent"] = float64(sent)
	for _, class := range []int{2, 3, 4, 5} {
		s.values[fmt.Sprintf("%dxx", class)] = 0
	}
	for code, n := range s.codes {
		s.values[fmt.Sprintf("%dxx", code/100)] += float64(n)
		s.values[fmt.Sprintf("code_%d", code)] = float64(n)
	}
	s.values["lost"] = s.values["errors"] + s.values["timeouts"]
	if !at.IsZero() {
		s.values["in_flight_at"] += 0
	}
	if sent > 0 {
		s.values["ok_pct"] = 100 * s.values["2xx"] / float64(sent)
	}
	// Every answer the gateway makes itself is a problem document; 100 when
	// there were no failures to judge.
	s.values["problem_pct"] = 100
	if nonOK > 0 {
		s.values["problem_pct"] = 100 * float64(problems) / float64(nonOK)
	}
	slices.Sort(durations)
	s.values["p50_ms"] = ms(percentile(durations, 0.50))
	s.values["p99_ms"] = ms(percentile(durations, 0.99))
	s.values["max_ms"] = ms(percentile(durations, 1))
	if !recoveryFrom.IsZero() {
		first := time.Time{}
		for _, r := range recs {
			if r.outcome != outcomeOK || r.status/100 != 2 || r.start.Before(recoveryFrom) {
				continue
			}
			if end := r.start.Add(r.duration); first.IsZero() || end.Before(first) {
				first = end
			}
		}
		if !first.IsZero() {
			s.values["recover_s"] = first.Sub(recoveryFrom).Seconds()
		}
	}
	return s
}

// percentile is the nearest-rank percentile of sorted durations, 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// String is the report's line: counts, latency, statuses and problem types.
func (s summary) String() string {
	v := s.values
	var b strings.Builder
	fmt.Fprintf(&b, "sent=%d 2xx=%d 3xx=%d 4xx=%d 5xx=%d errors=%d timeouts=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f",
		int(v["sent"]), int(v["2xx"]), int(v["3xx"]), int(v["4xx"]), int(v["5xx"]), int(v["errors"]), int(v["timeouts"]),
		v["p50_ms"], v["p99_ms"], v["max_ms"])
	if len(s.codes) > 0 {
		var parts []string
		for _, code := range slices.Sorted(maps.Keys(s.codes)) {
			parts = append(parts, fmt.Sprintf("%d:%d", code, s.codes[code]))
		}
		b.WriteString(" codes=" + strings.Join(parts, ","))
	}
	if len(s.problems) > 0 {
		var parts []string
		for _, t := range slices.Sorted(maps.Keys(s.problems)) {
			parts = append(parts, fmt.Sprintf("%s:%d", t, s.problems[t]))
		}
		b.WriteString(" problems=" + strings.Join(parts, ","))
	}
	if n, ok := v["in_flight_at"]; ok {
		fmt.Fprintf(&b, " in_flight_at=%d", int(n))
	}
	if r, ok := v["recover_s"]; ok {
		fmt.Fprintf(&b, " recover_s=%.2f", r)
	}
	return b.String()
}

// check evaluates comma-separated conditions "name op number" (op one of
// <= >= == != < >) against the figures and returns the unmet ones, each with
// the figure it saw; a figure that does not exist (recover_s without a
// recovery) fails its condition.
func (s summary) check(want string) ([]string, error) {
	var unmet []string
	for cond := range strings.SplitSeq(want, ",") {
		cond = strings.TrimSpace(cond)
		if cond == "" {
			continue
		}
		name, op, limit, err := parseCondition(cond)
		if err != nil {
			return nil, err
		}
		v, ok := s.values[name]
		if !ok && strings.HasPrefix(name, "code_") {
			v, ok = 0, true
		}
		switch {
		case !ok:
			unmet = append(unmet, cond+" ("+name+" none)")
		case !compare(v, op, limit):
			unmet = append(unmet, fmt.Sprintf("%s (%s=%g)", cond, name, v))
		}
	}
	return unmet, nil
}

var operators = []string{"<=", ">=", "==", "!=", "<", ">"}

func parseCondition(cond string) (name, op string, limit float64, err error) {
	for _, o := range operators {
		if n, l, ok := strings.Cut(cond, o); ok {
			limit, err = strconv.ParseFloat(strings.TrimSpace(l), 64)
			if err != nil {
				return "", "", 0, fmt.Errorf("-want %q: %q is not a number", cond, l)
			}
			return strings.TrimSpace(n), o, limit, nil
		}
	}
	return "", "", 0, fmt.Errorf("-want %q: want name, one of %v, and a number", cond, operators)
}

func compare(v float64, op string, limit float64) bool {
	switch op {
	case "<=":
		return v <= limit
	case ">=":
		return v >= limit
	case "==":
		return v == limit
	case "!=":
		return v != limit
	case "<":
		return v < limit
	}
	return v > limit
}

// errUnmet makes the command exit 1 after printing its line.
var errUnmet = errors.New("conditions unmet")

func runReport(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	logPaths := fs.String("log", "", "request logs written by load, comma-separated (required)")
	from := fs.Float64("from", 0, "count requests started at or after this Unix time (seconds)")
	to := fs.Float64("to", 0, "count requests started before this Unix time (seconds)")
	recovery := fs.Float64("recovery-from", 0, "report recover_s, the time from this Unix time to the first 2xx after it")
	at := fs.Float64("at", 0, "report in_flight_at, the requests sent before this Unix time and answered after it")
	want := fs.String("want", "", `conditions, e.g. "lost==0,ok_pct>=99"; unmet ones are printed and make the exit status 1`)
	fields := fs.String("fields", "", "print only these figures, comma-separated (default: the whole line)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var recs []record
	for path := range strings.SplitSeq(*logPaths, ",") {
		r, err := readLog(path)
		if err != nil {
			return err
		}
		recs = append(recs, r...)
	}
	s := summarizeAt(recs, unixTime(*from), unixTime(*to), unixTime(*recovery), unixTime(*at))
	unmet, err := s.check(*want)
	if err != nil {
		return err
	}
	line := s.String()
	if *fields != "" {
		line = s.only(strings.Split(*fields, ","))
	}
	if len(unmet) > 0 {
		line += " UNMET: " + strings.Join(unmet, "; ")
	}
	fmt.Fprintln(out, line)
	if len(unmet) > 0 {
		return errUnmet
	}
	return nil
}

func readLog(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the request log: %w", err)
	}
	defer f.Close()
	recs, err := readRecords(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return recs, nil
}

// only is the line with just the named figures, "name=none" for one that
// does not exist.
func (s summary) only(names []string) string {
	parts := make([]string, 0, len(names))
	for _, name := range names {
		v, ok := s.values[name]
		switch {
		case !ok:
			parts = append(parts, name+"=none")
		case v == math.Trunc(v):
			parts = append(parts, fmt.Sprintf("%s=%d", name, int64(v)))
		default:
			parts = append(parts, fmt.Sprintf("%s=%.2f", name, v))
		}
	}
	return strings.Join(parts, " ")
}

// unixTime converts seconds since the epoch; 0 is the zero time (unset).
func unixTime(sec float64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	whole, frac := math.Modf(sec)
	return time.Unix(int64(whole), int64(frac*1e9))
}
