package main

import (
	"crypto/rand"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lexiscore/gateway/api"
)

const (
	// userIDHeader names the authenticated user, tenantHeader their tenant
	// and scopesHeader their space-separated scopes; the gateway sets and
	// signs them.
	userIDHeader  = "X-Auth-User-ID"
	tenantHeader  = "X-Auth-User-Tenant"
	scopesHeader  = "X-Auth-User-Scopes"
	anonymousUser = "anonymous"
	// scopeReadTenant lets a caller read the scores of their tenant's
	// users, scopeReadAny every score (operators, for support).
	scopeReadTenant = "scores:read:tenant"
	scopeReadAny    = "scores:read:any"
	defaultLimit    = 20
	maxLimit        = 100
)

// idPattern is what score and user ids in paths must match.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// newScoreID returns an opaque, unguessable score id: "sc_" and 128 random
// bits in lower-case base32.
func newScoreID() string {
	return "sc_" + strings.ToLower(rand.Text())
}

// createScore handles POST /v1/scores.
func (s *server) createScore(w http.ResponseWriter, r *http.Request) {
	sub, err := readSubmission(w, r)
	if err != nil {
		writeError(w, r, s.logger, err)
		return
	}
	c := callerOf(r)
	sc := assess(sub, newScoreID(), c.user, time.Now())
	sc.Tenant = c.tenant
	s.store.add(sc)
	w.Header().Set("Location", "/v1/scores/"+sc.ID)
	writeJSON(w, r, s.logger, http.StatusCreated, sc)
}

// getScore handles GET /v1/scores/{id}.
func (s *server) getScore(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, r, s.logger, err)
		return
	}
	// Another user's score is "not found", not "forbidden": score ids
	// must not be probed for existence.
	sc, ok := s.store.get(id)
	if !ok || !callerOf(r).mayRead(sc) {
		writeProblem(w, r, http.StatusNotFound, probNotFound, "No score has this id.")
		return
	}
	writeJSON(w, r, s.logger, http.StatusOK, sc)
}

// scoreList is the body of GET /v1/users/{id}/scores.
type scoreList struct {
	UserID string  `json:"user_id"`
	Scores []score `json:"scores"`
}

// listUserScores handles GET /v1/users/{id}/scores.
func (s *server) listUserScores(w http.ResponseWriter, r *http.Request) {
	user, err := pathID(r)
	if err != nil {
		writeError(w, r, s.logger, err)
		return
	}
	limit, err := parseLimit(r.URL.Query().Get("limit"))
	if err != nil {
		writeError(w, r, s.logger, err)
		return
	}
	c := callerOf(r)
	if c.user != user && !c.has(scopeReadAny) && !c.has(scopeReadTenant) {
		writeProblem(w, r, http.StatusForbidden, probForbidden, "You may not list another user's scores.")
		return
	}
	writeJSON(w, r, s.logger, http.StatusOK, scoreList{UserID: user, Scores: s.store.byUserNewest(user, limit, c.mayRead)})
}

// caller is who a request comes from, as the gateway's signed identity
// headers say.
type caller struct {
	user, tenant string
	scopes       []string
}

// callerOf reads the identity headers; without a user id the caller is
// anonymousUser, who owns what it submitted without one.
func callerOf(r *http.Request) caller {
	c := caller{user: r.Header.Get(userIDHeader), tenant: r.Header.Get(tenantHeader), scopes: strings.Fields(r.Header.Get(scopesHeader))}
	if c.user == "" {
		c.user = anonymousUser
	}
	return c
}

func (c caller) has(scope string) bool { return slices.Contains(c.scopes, scope) }

// mayRead says whether c may read sc: their own, their tenant's with
// scopeReadTenant, any with scopeReadAny.
func (c caller) mayRead(sc score) bool {
	return sc.UserID == c.user || c.has(scopeReadAny) ||
		(c.has(scopeReadTenant) && c.tenant != "" && sc.Tenant == c.tenant)
}

// pathID returns the {id} path value, checked against idPattern.
func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !idPattern.MatchString(id) {
		return "", badRequest("The id must be 1 to 64 letters, digits, '-' or '_'.", nil)
	}
	return id, nil
}

// parseLimit parses the limit query parameter; empty means the default.
func parseLimit(v string) (int, error) {
	if v == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLimit {
		return 0, badRequest("limit must be an integer between 1 and 100.", err)
	}
	return n, nil
}

// healthz handles GET /healthz.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, s.logger, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz handles GET /readyz. The in-memory store needs no warm-up, so the
// service is ready whenever it is reachable.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, s.logger, http.StatusOK, map[string]string{"status": "ready"})
}

// openAPI handles GET /openapi.yaml.
func (s *server) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(api.Scoring)
}
