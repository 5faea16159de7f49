package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// maxFaultsBody bounds a PUT /faults body.
const maxFaultsBody = 64 << 10

// adminHandler routes the admin API, which switches faults and reports what
// the public API received.
func (s *server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /faults", s.getFaults)
	mux.HandleFunc("PUT /faults", s.putFaults)
	mux.HandleFunc("DELETE /faults", s.deleteFaults)
	mux.HandleFunc("GET /stats", s.getStats)
	mux.HandleFunc("DELETE /stats", s.deleteStats)
	mux.HandleFunc("GET /requests", s.getRequests)
	mux.HandleFunc("DELETE /requests", s.deleteRequests)
	mux.HandleFunc("GET /healthz", s.healthz)
	return echoRequestID(withProblems(mux))
}

// getFaults handles GET /faults.
func (s *server) getFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, s.logger, http.StatusOK, s.faults.load())
}

// putFaults handles PUT /faults: the body replaces all faults, absent fields
// being off.
func (s *server) putFaults(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFaultsBody))
	dec.DisallowUnknownFields()
	var f faults
	if err := dec.Decode(&f); err != nil {
		writeError(w, r, s.logger, bodyError("The body is not a valid faults object: "+err.Error(), err))
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, r, s.logger, bodyError("The body must hold a single JSON object.", err))
		return
	}
	if err := f.validate(); err != nil {
		writeError(w, r, s.logger, badRequest(err.Error()+".", err))
		return
	}
	if err := s.setFaults(f); err != nil {
		writeError(w, r, s.logger, listenError(err))
		return
	}
	s.logger.Info("faults set", "faults", f)
	writeJSON(w, r, s.logger, http.StatusOK, f)
}

// deleteFaults handles DELETE /faults, ending every fault.
func (s *server) deleteFaults(w http.ResponseWriter, r *http.Request) {
	if err := s.setFaults(faults{}); err != nil {
		writeError(w, r, s.logger, listenError(err))
		return
	}
	s.logger.Info("faults cleared")
	w.WriteHeader(http.StatusNoContent)
}

// listenError is the answer when an outage cannot end because the API
// address can no longer be bound; the operator needs the cause to fix it.
func listenError(err error) *apiError {
	return &apiError{
		status: http.StatusInternalServerError,
		typ:    probInternal,
		detail: "The API listener could not be reopened: " + err.Error(),
		err:    err,
	}
}

// getStats handles GET /stats.
func (s *server) getStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, s.logger, http.StatusOK, s.stats.snapshot())
}

// deleteStats handles DELETE /stats.
func (s *server) deleteStats(w http.ResponseWriter, _ *http.Request) {
	s.stats.reset()
	w.WriteHeader(http.StatusNoContent)
}

// getRequests handles GET /requests: the last /v1 requests, oldest first.
func (s *server) getRequests(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, s.logger, http.StatusOK, s.requests.list())
}

// deleteRequests handles DELETE /requests.
func (s *server) deleteRequests(w http.ResponseWriter, _ *http.Request) {
	s.requests.clear()
	w.WriteHeader(http.StatusNoContent)
}
