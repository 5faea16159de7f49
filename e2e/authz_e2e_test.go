package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/lexiscore/gateway/internal/testkit"
)

// TestAuthorizationEndToEnd: through the real binary and the shipped
// Caddyfile, a user reads only their own scores; a user of the same tenant
// with scores:read:tenant and an operator with scores:read:any read others'.
// The gateway refuses what it sees in the path (another user's list: 403),
// the backend what it alone knows (another user's score id: 404).
func TestAuthorizationEndToEnd(t *testing.T) {
	be := StartBackend(t, bins, nil)
	gw := StartGateway(t, bins, []string{be.Addr}, nil)
	as := func(user, tenant string, scopes ...string) http.Header {
		return gw.BearerWith(t, Claims{Subject: user, Tier: "pro", Tenant: tenant, Scopes: scopes})
	}
	alice := as("alice", "acme")
	bob := as("bob", "globex")
	carol := as("carol", "acme", "scores:read:tenant")
	dave := as("dave", "globex", "scores:read:tenant")
	ops := as("ops", "lexiscore", "scores:read:any")

	id := createScores(t, gw, alice, 1)[0]
	cases := []struct {
		name, path string
		h          http.Header
		want       int
		problem    string
	}{
		{"alice reads her list", "/v1/users/alice/scores", alice, http.StatusOK, ""},
		{"alice reads her score", "/v1/scores/" + id, alice, http.StatusOK, ""},
		{"bob reads alice's list", "/v1/users/alice/scores", bob, http.StatusForbidden, "#forbidden"},
		{"bob reads alice's list by a dot segment", "/v1/users/bob/%2e%2e/alice/scores", bob, http.StatusForbidden, "#forbidden"},
		{"bob reads alice's score", "/v1/scores/" + id, bob, http.StatusNotFound, "#not-found"},
		{"a tenant-scoped user of alice's tenant reads her list", "/v1/users/alice/scores", carol, http.StatusOK, ""},
		{"a tenant-scoped user of alice's tenant reads her score", "/v1/scores/" + id, carol, http.StatusOK, ""},
		{"a tenant-scoped user of another tenant reads her score", "/v1/scores/" + id, dave, http.StatusNotFound, "#not-found"},
		{"an operator reads her list", "/v1/users/alice/scores", ops, http.StatusOK, ""},
		{"an operator reads her score", "/v1/scores/" + id, ops, http.StatusOK, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := gw.Do(t, http.MethodGet, tc.path, nil, tc.h)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.problem != "" {
				assertSecurityHeaders(t, resp)
				doc := problemBody(t, resp)
				if !strings.HasSuffix(doc["type"].(string), tc.problem) || doc["request_id"] == nil {
					t.Fatalf("problem %v, want type %s", doc, tc.problem)
				}
				// The gateway's refusal, not the backend's: the request never
				// reached it.
				if tc.want == http.StatusForbidden && doc["policy"] != "user_data" {
					t.Fatalf("problem %v, want the gateway's, naming policy user_data", doc)
				}
				return
			}
			var body struct {
				ID     string `json:"id"`
				Scores []struct {
					ID string `json:"id"`
				} `json:"scores"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if body.ID != id && (len(body.Scores) != 1 || body.Scores[0].ID != id) {
				t.Fatalf("body %+v, want alice's score %s", body, id)
			}
		})
	}

	t.Run("dave's list of alice's scores holds none of them", func(t *testing.T) {
		resp := gw.Do(t, http.MethodGet, "/v1/users/alice/scores", nil, dave)
		var list struct {
			Scores []any `json:"scores"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); resp.StatusCode != http.StatusOK || err != nil || len(list.Scores) != 0 {
			t.Fatalf("status %d, %d scores (%v), want 200 and none", resp.StatusCode, len(list.Scores), err)
		}
	})

	t.Run("the backend gets the identity and scopes, not the token", func(t *testing.T) {
		if resp := gw.Do(t, http.MethodGet, "/v1/users/alice/scores?access_token=x&limit=5", nil, ops); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		got := receivedHeaders(t, be)
		if got.Get("Authorization") != "" || got.Get("X-Auth-User-Scopes") != "scores:read:any" || got.Get("X-Auth-User-Id") != "ops" {
			t.Fatalf("backend headers %v", got)
		}
	})

	t.Run("metrics and audit", func(t *testing.T) {
		m := gw.Metrics(t)
		for _, want := range []string{
			`gateway_authz_decisions_total{decision="deny",grant="none",policy="user_data"} 2`,
			`gateway_authz_decisions_total{decision="allow",grant="identity",policy="user_data"} 1`,
			`gateway_authz_decisions_total{decision="allow",grant="scope",policy="user_data"} 4`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		testkit.Eventually(t, "the audit of bob's refusal", func() error {
			for _, line := range strings.Split(gw.Output(), "\n") {
				if strings.Contains(line, `"logger":"http.handlers.authorize.audit"`) && strings.Contains(line, `"decision":"deny"`) && strings.Contains(line, `"user_id":"bob"`) {
					return nil
				}
			}
			return errors.New("no audit event of bob's refusal")
		})
	})
}
