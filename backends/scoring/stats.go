package main

import (
	"maps"
	"sync"
)

// Route patterns of the /v1 API; they are also the keys of by_route in the
// statistics.
const (
	routeCreateScore = "POST /v1/scores"
	routeGetScore    = "GET /v1/scores/{id}"
	routeUserScores  = "GET /v1/users/{id}/scores"
)

// statsSnapshot is the JSON form of the statistics (GET /stats).
type statsSnapshot struct {
	// RequestsTotal counts all /v1 requests received, routed or not.
	RequestsTotal int64 `json:"requests_total"`
	// ByRoute counts /v1 requests per route pattern.
	ByRoute map[string]int64 `json:"by_route"`
	// InFlight is the number of /v1 requests being answered now.
	InFlight int64 `json:"in_flight"`
	// MaxInFlight is the high-water mark of InFlight.
	MaxInFlight int64 `json:"max_in_flight"`
	// CancelledTotal counts /v1 requests whose client went away before the
	// answer was complete.
	CancelledTotal int64 `json:"cancelled_total"`
	// ErrorsInjectedTotal counts /v1 requests answered with an injected error.
	ErrorsInjectedTotal int64 `json:"errors_injected_total"`
}

// stats counts /v1 requests so that tests can check what the gateway sent:
// how many, how concurrently, and how many it abandoned. It is safe for
// concurrent use.
type stats struct {
	mu sync.Mutex
	s  statsSnapshot
}

func newStats() *stats {
	st := &stats{}
	st.reset()
	return st
}

// begin counts a request entering the /v1 chain; route is its pattern, or ""
// when no route matches.
func (st *stats) begin(route string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.RequestsTotal++
	if _, ok := st.s.ByRoute[route]; ok {
		st.s.ByRoute[route]++
	}
	st.s.InFlight++
	st.s.MaxInFlight = max(st.s.MaxInFlight, st.s.InFlight)
}

// end counts a request leaving the /v1 chain.
func (st *stats) end(cancelled bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.InFlight--
	if cancelled {
		st.s.CancelledTotal++
	}
}

// errorInjected counts a request answered with an injected error.
func (st *stats) errorInjected() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.ErrorsInjectedTotal++
}

// snapshot returns a copy of the statistics.
func (st *stats) snapshot() statsSnapshot {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.s
	s.ByRoute = maps.Clone(st.s.ByRoute)
	return s
}

// reset zeroes the counters. InFlight is a gauge of requests still running,
// so it is kept, and the high-water mark restarts from it.
func (st *stats) reset() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s = statsSnapshot{
		ByRoute:     map[string]int64{routeCreateScore: 0, routeGetScore: 0, routeUserScores: 0},
		InFlight:    st.s.InFlight,
		MaxInFlight: st.s.InFlight,
	}
}
