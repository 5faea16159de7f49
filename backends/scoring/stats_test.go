package main

import "testing"

func TestStatsResetKeepsInFlight(t *testing.T) {
	st := newStats()
	st.begin(routeGetScore)
	st.begin("")
	st.end(true)
	st.reset()
	s := st.snapshot()
	if s.InFlight != 1 || s.MaxInFlight != 1 || s.RequestsTotal != 0 || s.CancelledTotal != 0 {
		t.Errorf("after reset = %+v, want in_flight and max_in_flight 1, counters 0", s)
	}
	st.end(false)
	if s := st.snapshot(); s.InFlight != 0 || s.MaxInFlight != 1 {
		t.Errorf("after end = %+v, want in_flight 0, max_in_flight 1", s)
	}
}
