package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/lexiscore/gateway/internal/testkit/promcheck"
)

// The end-to-end proof of the observability part of issue 5: after
// representative traffic through the real gateway, its real /metrics scrape
// has every gateway_* series with the right labels and values, lints clean
// with promtool, and satisfies every dashboard and rule; its logs carry the
// correlation IDs and none of the secrets clients sent.

// readRoutes are the backend's GET routes (keys of /stats by_route): the
// requests of the read_scores resilience route.
var readRoutes = []string{"GET /v1/scores/{id}", "GET /v1/users/{id}/scores"}

// notScrapedUnderTest are series a dashboard or rule selects that the
// traffic of TestMetricsAfterRepresentativeTraffic cannot make appear, with
// the labels their modules declare. Everything else must be in the scrape.
var notScrapedUnderTest = map[string][]string{
	// No JWKS URL is configured.
	"gateway_jwks_refresh_total": {"result"},
	// The breaker is kept closed (see the test) and no bulkhead fills up.
	"gateway_circuit_breaker_transitions_total": {"upstream", "from", "to"},
	"gateway_concurrency_rejections_total":      {"route", "reason"},
	// Whether the retry budget runs out at 50% errors depends on timing.
	"gateway_retry_budget_exhausted_total": {"route"},
}

// TestMetricsAfterRepresentativeTraffic drives 401, 429, 400, retried reads
// and a stale fallback through one gateway, then checks its scrape.
func TestMetricsAfterRepresentativeTraffic(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, map[string]string{
		// Reads are limited per user: one user's burst of reads gets 429s,
		// while each reader of the retry phase has a budget of its own.
		"GATEWAY_RATE_BURST":     "3/s",
		"GATEWAY_RATE_SUSTAINED": "600/m",
		// At 50% errors the breaker (ratio 0.75 over 20 calls) could open by
		// chance; an attempt it refused would count as a retry that never
		// reached the backend and break the accounting below.
		"GATEWAY_BREAKER_MIN_REQUESTS": "1000",
	})

	// 401: no credential.
	if r := call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/users/anon/scores", "", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", r.status)
	}
	// 400: a body that is not JSON, from a user of its own so that it does
	// not use up the scoring burst of the writer below.
	if r := call(gw.Client, http.MethodPost, gw.BaseURL+"/v1/scores", `{"audio_base64":`, gw.Bearer(t, "badjson", "free")); r.status != http.StatusBadRequest {
		t.Fatalf("bad JSON body: %d %s, want 400", r.status, r.body)
	}
	id := createScores(t, gw, gw.Bearer(t, "writer", "free"), 1)[0]
	// 429: more reads than the burst of 3 per second allows. Sequential
	// requests on a busy machine may spread over windows, hence the loop.
	greedy := gw.Bearer(t, "greedy", "free")
	denied := false
	for range 30 {
		r := call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/users/greedy/scores", "", greedy)
		if r.status == http.StatusTooManyRequests {
			denied = true
			break
		}
		if r.status != http.StatusOK {
			t.Fatalf("greedy read: %d %s", r.status, r.body)
		}
	}
	if !denied {
		t.Fatal("30 reads in a row were never refused with 429 at a burst of 3/s")
	}
	// The copy the stale fallback serves later. The readers of the writer's
	// score are support staff: users of their own, each with its own rate
	// limit, allowed to read any score.
	staleReader := gw.BearerWith(t, Claims{Subject: "stale-reader", Tier: "free", Scopes: []string{"scores:read:any"}})
	if r := call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/scores/"+id, "", staleReader); r.status != http.StatusOK {
		t.Fatalf("warming the cache: %d %s", r.status, r.body)
	}

	// Retried reads. Every one passes auth, its own user's rate limit and
	// validation, so each reaches the backend once; every further attempt
	// the backend received is a retry. Hedging is off (the Caddyfile's
	// default), so no attempt is made that is not counted as a retry, and
	// none is still on its way when its client has its answer. A read that
	// is served stale reached the backend first, so stale answers do not
	// change the accounting; the readers here have no cached copy anyway.
	before, retriesBefore := statsOf(t, be), retriesOf(metrics(t, gw))
	be.SetFaults(t, map[string]any{"error_rate": 0.5, "error_status": 503})
	const reads = 30
	for i := range reads {
		user := fmt.Sprint("reader-", i)
		r := call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/scores/"+id, "", gw.BearerWith(t, Claims{Subject: user, Tier: "free", Scopes: []string{"scores:read:any"}}))
		if r.status != http.StatusOK && r.status != http.StatusServiceUnavailable {
			t.Fatalf("read %d at 50%% backend errors: %d %s", i, r.status, r.body)
		}
	}
	be.SetFaults(t, map[string]any{})
	after, retriesAfter := statsOf(t, be), retriesOf(metrics(t, gw))
	attempts := int64(0)
	for _, route := range readRoutes {
		attempts += after.ByRoute[route] - before.ByRoute[route]
	}
	retried := retriesAfter - retriesBefore
	t.Logf("%d reads made %d backend attempts; gateway_retries_total{route=read_scores} grew by %v", reads, attempts, retried)
	if retried == 0 {
		t.Error("no read was retried at 50% backend errors")
	}
	if want := float64(attempts - reads); retried != want {
		t.Errorf("gateway_retries_total{route=read_scores} grew by %v, want backend attempts - reads = %d - %d = %v", retried, attempts, reads, want)
	}

	// 200 from the stale fallback while the backend refuses connections.
	be.SetFaults(t, map[string]any{"outage": true})
	if r := call(gw.Client, http.MethodGet, gw.BaseURL+"/v1/scores/"+id, "", staleReader); r.status != http.StatusOK || !strings.Contains(r.header.Get("Warning"), "110") {
		t.Errorf("cached read during the outage: %d, Warning %q; want the stale copy", r.status, r.header.Get("Warning"))
	}

	scrape := gw.Metrics(t)
	fams := metrics(t, gw)
	for _, want := range []struct {
		name   string
		labels map[string]string
	}{
		{"gateway_auth_requests_total", map[string]string{"provider": "jwt", "result": "success"}},
		{"gateway_auth_requests_total", map[string]string{"provider": "none", "result": "missing"}},
		{"gateway_ratelimit_decisions_total", map[string]string{"policy": "burst", "decision": "allowed"}},
		{"gateway_ratelimit_decisions_total", map[string]string{"policy": "burst", "decision": "denied"}},
		{"gateway_ratelimit_decisions_total", map[string]string{"policy": "score_burst", "decision": "allowed"}},
		{"gateway_validation_failures_total", map[string]string{"route": "createScore"}},
		{"gateway_upstream_requests_total", map[string]string{"upstream": be.Addr, "code_class": "2xx"}},
		{"gateway_upstream_requests_total", map[string]string{"upstream": be.Addr, "code_class": "5xx"}},
		{"gateway_retries_total", map[string]string{"route": "read_scores", "reason": "status"}},
		{"gateway_fallbacks_total", map[string]string{"route": "read_scores", "kind": "stale"}},
		{"gateway_signed_requests_total", map[string]string{"key_id": SigningKeyID}},
	} {
		if n, v := sumSeries(fams, want.name, want.labels); n == 0 || v < 1 {
			t.Errorf("%s%v: %d series summing to %v, want at least 1", want.name, want.labels, n, v)
		}
	}
	// The breaker's state: one series per state, exactly one of them 1.
	if n, v := sumSeries(fams, "gateway_circuit_breaker_state", map[string]string{"upstream": be.Addr}); n != 3 || v != 1 {
		t.Errorf("gateway_circuit_breaker_state{upstream=%q}: %d series summing to %v, want 3 summing to 1", be.Addr, n, v)
	}
	if n, _ := sumSeries(fams, "gateway_upstream_duration_seconds", map[string]string{"upstream": be.Addr}); n == 0 {
		t.Errorf("no gateway_upstream_duration_seconds histogram for upstream %s", be.Addr)
	}

	t.Run("promtool check metrics", func(t *testing.T) {
		cmd := exec.Command("/usr/bin/promtool", "check", "metrics")
		cmd.Stdin = strings.NewReader(scrape)
		out, err := cmd.CombinedOutput()
		// promtool exits 3 for lint findings; Caddy's and the Go runtime's
		// own metrics are not ours to rename, so only findings about
		// gateway_* series, or a scrape it cannot parse (exit 1), fail.
		var exit *exec.ExitError
		if err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 3) {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.Contains(line, "gateway_") || strings.Contains(line, "error while linting") {
				t.Errorf("promtool: %s", line)
			}
		}
		t.Logf("promtool output (findings about other metrics are tolerated):\n%s", out)
	})

	t.Run("dashboards and rules select live series", func(t *testing.T) {
		scraped, err := promcheck.FromScrape(strings.NewReader(scrape))
		if err != nil {
			t.Fatal(err)
		}
		var absent []string
		for name, labels := range notScrapedUnderTest {
			if _, ok := scraped[name]; ok {
				continue
			}
			absent = append(absent, name)
			scraped.Add(name, labels...)
		}
		t.Logf("allowlisted, not in this scrape: %v", absent)
		known, err := promcheck.Known(bins.Root, scraped)
		if err != nil {
			t.Fatal(err)
		}
		exprs, err := promcheck.All(bins.Root)
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range promcheck.Check(exprs, known) {
			t.Error(err)
		}
	})
}

// retriesOf is gateway_retries_total of the read_scores route, all reasons.
func retriesOf(fams map[string]*dto.MetricFamily) float64 {
	_, v := sumSeries(fams, "gateway_retries_total", map[string]string{"route": "read_scores"})
	return v
}

// sumSeries returns how many series of name carry all of labels, and the
// sum of their values (counters and gauges; a histogram's sample count).
// Given all of a metric's labels, the sum is its one series' value (0 when
// there is none).
func sumSeries(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (int, float64) {
	n, sum := 0, 0.0
	for _, m := range fams[name].GetMetric() {
		matched := 0
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; ok && v == lp.GetValue() {
				matched++
			}
		}
		if matched != len(labels) {
			continue
		}
		n++
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return n, sum
}

// credentialQuery is a query string that sends secret under every
// credential-like parameter name the access log must mask.
func credentialQuery(secret string) string {
	var b strings.Builder
	for _, name := range []string{"api_key", "access_token", "token", "apikey", "key", "password", "secret",
		"signature", "sig", "auth", "code", "X-Amz-Signature", "client_secret", "id_token", "session", "Token"} {
		b.WriteString("&" + name + "=" + secret)
	}
	return b.String()
}

// TestLogsCarryIDsAndNoSecrets sends credentials and secrets in every place
// a client can (bearer token, API key, cookie, query string) and finds none
// of them anywhere in the gateway's output, access and audit logs included,
// while each access log line carries its request ID, the client's trace ID
// and the authenticated user.
func TestLogsCarryIDsAndNoSecrets(t *testing.T) {
	apiKey, keysFile := newAPIKey(t, "--user", "robot", "--tier", "pro", "--expires", "1h")
	// A well-formed key with the wrong secret: refused, and not logged either.
	forged := apiKey[:len(apiKey)-4] + "AAAA"
	if forged == apiKey {
		forged = apiKey[:len(apiKey)-4] + "BBBB"
	}

	// A real trace exporter, so that the trace IDs logged are those of
	// exported spans.
	rcv := StartOTLPReceiver(t)
	be := StartBackend(t, bins, nil)
	env := rcv.Env("gateway")
	env["GATEWAY_API_KEYS_FILE"] = keysFile
	gw := StartGateway(t, bins, []string{be.Addr}, env)
	bearer := gw.Bearer(t, "log-user", "free")
	token := strings.TrimPrefix(bearer.Get("Authorization"), "Bearer ")

	const cookieSecret, querySecret = "supersecret", "topsecret"
	requests := []struct {
		requestID, traceID, path string
		header                   http.Header
		status                   int
		userID                   string
	}{
		{"log-bearer", "0af7651916cd43dd8448eb211c80319c", "/v1/users/log-user/scores", bearer, http.StatusOK, "log-user"},
		{"log-api-key", "5b8efff798038103d269b633813fc60c", "/v1/users/robot/scores", http.Header{"X-Api-Key": {apiKey}}, http.StatusOK, "robot"},
		{"log-forged-key", "a3ce929d0e0e47364bf92f3577b34da6", "/v1/users/robot/scores", http.Header{"X-Api-Key": {forged}}, http.StatusUnauthorized, ""},
	}
	for _, rq := range requests {
		h := with(rq.header,
			"X-Request-ID", rq.requestID,
			"traceparent", "00-"+rq.traceID+"-00f067aa0ba902b7-01",
			"Cookie", "session="+cookieSecret)
		r := call(gw.Client, http.MethodGet, gw.BaseURL+rq.path+"?limit=5"+credentialQuery(querySecret), "", h)
		if r.status != rq.status {
			t.Fatalf("%s: status %d %s, want %d", rq.requestID, r.status, r.body, rq.status)
		}
		if got := r.header.Get("X-Request-ID"); got != rq.requestID {
			t.Errorf("%s: response X-Request-ID %q", rq.requestID, got)
		}
	}

	for _, rq := range requests {
		entry := accessLogEntry(t, gw, rq.requestID)
		if entry["traceID"] != rq.traceID {
			t.Errorf("%s: access log traceID %v, want the client's %s", rq.requestID, entry["traceID"], rq.traceID)
		}
		if s, _ := entry["spanID"].(string); len(s) != 16 {
			t.Errorf("%s: access log spanID %v", rq.requestID, entry["spanID"])
		}
		if entry["user_id"] != rq.userID {
			t.Errorf("%s: access log user_id %v, want %q", rq.requestID, entry["user_id"], rq.userID)
		}
		if rq.status == http.StatusOK {
			// What the modules decided for the request is on its line too.
			want := map[string]any{"route": "read_scores", "attempts": float64(1), "upstream": be.Addr,
				"breaker_state": "closed", "ratelimit_decision": "allowed"}
			for k, v := range want {
				if entry[k] != v {
					t.Errorf("%s: access log %s = %v, want %v", rq.requestID, k, entry[k], v)
				}
			}
		}
		// The query is logged, masked, rather than dropped.
		req, _ := entry["request"].(map[string]any)
		if uri, _ := req["uri"].(string); !strings.Contains(uri, "api_key=REDACTED") || !strings.Contains(uri, "limit=5") {
			t.Errorf("%s: access log uri %q, want the query with api_key masked", rq.requestID, uri)
		}
	}

	// Every access log line is in by now; once the audit lines are too,
	// the whole output is final for these requests.
	for _, rq := range requests {
		logEntry(t, gw, "authentication", rq.requestID)
	}
	logs := gw.Output()
	for what, secret := range map[string]string{
		"bearer token":       token,
		"API key":            apiKey,
		"forged API key":     forged,
		"cookie value":       cookieSecret,
		"query secret":       querySecret,
		"JWT signing secret": gw.Env["GATEWAY_JWT_SECRET"],
		"upstream secret":    gw.Env["GATEWAY_SIGNING_SECRET"],
	} {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, secret) {
				t.Errorf("the %s appears in the gateway's output: %s", what, line)
			}
		}
	}
}
