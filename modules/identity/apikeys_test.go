package identity

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mintKey returns a new key for user and its keys-file line.
func mintKey(t testing.TB, user, tier, tenant string, expires *time.Time) (string, string) {
	t.Helper()
	rec := KeyRecord{User: user, Tier: tier, Tenant: tenant, Expires: expires}
	key, err := NewAPIKey(&rec)
	if err != nil {
		t.Fatal(err)
	}
	line, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(line)
}

func writeKeys(t testing.TB, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// touch moves the file's mtime forward, as a later edit would.
func touch(t testing.TB, path string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

func TestAPIKeyVerify(t *testing.T) {
	past := testNow.Add(-time.Hour)
	future := testNow.Add(time.Hour)
	alice1, aliceLine1 := mintKey(t, "alice", "pro", "acme", nil)
	alice2, aliceLine2 := mintKey(t, "alice", "pro", "acme", &future)
	old, oldLine := mintKey(t, "bob", "free", "", &past)
	path := filepath.Join(t.TempDir(), "keys.jsonl")
	writeKeys(t, path, "# keys of the demo", "", aliceLine1, aliceLine2, oldLine)
	s, err := NewKeyStore(path, fixedClock)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := ParseAPIKey(alice1)
	wrongSecret := APIKeyPrefix + id + "_" + strings.Repeat("A", 43)

	cases := []struct {
		name, key string
		want      Result
	}{
		{"valid", alice1, ResultSuccess},
		{"second key of the same user", alice2, ResultSuccess},
		{"empty", "", ResultMissing},
		{"no prefix", "abc", ResultMalformed},
		{"no secret", APIKeyPrefix + id + "_", ResultMalformed},
		{"bad id", APIKeyPrefix + "a-b_secret", ResultMalformed},
		{"oversized", APIKeyPrefix + id + "_" + strings.Repeat("x", 300), ResultMalformed},
		{"unknown id", APIKeyPrefix + "0000000000000000_" + strings.Repeat("A", 43), ResultUnknownKey},
		{"wrong secret", wrongSecret, ResultBadSignature},
		{"expired", old, ResultExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := s.Verify(tc.key)
			if out.Result != tc.want {
				t.Fatalf("result %q, want %q (%v)", out.Result, tc.want, out.Err)
			}
			if tc.want == ResultSuccess {
				m := out.User.Metadata
				if out.User.ID != "alice" || m["tier"] != "pro" || m["tenant"] != "acme" || m["provider"] != "api_key" || m["key_id"] != out.KeyID {
					t.Fatalf("identity %+v", out.User)
				}
			}
		})
	}
}

func TestAPIKeyScopes(t *testing.T) {
	rec := KeyRecord{User: "support", Tenant: "acme", Scopes: []string{"scores:read:tenant", "scores:read:tenant"}}
	key, err := NewAPIKey(&rec)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := json.Marshal(rec)
	path := filepath.Join(t.TempDir(), "keys.jsonl")
	writeKeys(t, path, string(line))
	s, err := NewKeyStore(path, fixedClock)
	if err != nil {
		t.Fatal(err)
	}
	if out := s.Verify(key); out.Result != ResultSuccess || out.User.Metadata["scopes"] != "scores:read:tenant" {
		t.Fatalf("result %q, identity %+v", out.Result, out.User)
	}
}

func TestAPIKeyReload(t *testing.T) {
	keep, keepLine := mintKey(t, "alice", "pro", "", nil)
	drop, dropLine := mintKey(t, "bob", "free", "", nil)
	added, addedLine := mintKey(t, "carol", "free", "", nil)
	path := filepath.Join(t.TempDir(), "keys.jsonl")
	writeKeys(t, path, keepLine, dropLine)
	touch(t, path, testNow)
	s, err := NewKeyStore(path, fixedClock)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); changed || err != nil {
		t.Fatalf("unchanged file reloaded: %v, %v", changed, err)
	}

	writeKeys(t, path, keepLine, addedLine)
	touch(t, path, testNow.Add(time.Second))
	if changed, err := s.Reload(); !changed || err != nil {
		t.Fatalf("changed file not reloaded: %v, %v", changed, err)
	}
	for key, want := range map[string]Result{keep: ResultSuccess, added: ResultSuccess, drop: ResultUnknownKey} {
		if got := s.Verify(key).Result; got != want {
			t.Errorf("after reload: %q, want %q", got, want)
		}
	}

	// A broken edit keeps the keys in force.
	writeKeys(t, path, keepLine, `{"id": "broken"`)
	touch(t, path, testNow.Add(2*time.Second))
	if _, err := s.Reload(); err == nil {
		t.Fatal("a broken file reloaded without error")
	}
	if got := s.Verify(added).Result; got != ResultSuccess {
		t.Fatalf("after a failed reload: %q, want the previous keys", got)
	}
}

func TestParseKeyFileErrors(t *testing.T) {
	_, line := mintKey(t, "alice", "", "", nil)
	cases := map[string]string{
		"duplicate id":  line + "\n" + line,
		"unknown field": `{"id":"a1","hash":"` + strings.Repeat("0", 64) + `","user":"u","secret":"x"}`,
		"short hash":    `{"id":"a1","hash":"abcd","user":"u"}`,
		"no user":       `{"id":"a1","hash":"` + strings.Repeat("0", 64) + `"}`,
		"bad id":        `{"id":"a_1","hash":"` + strings.Repeat("0", 64) + `","user":"u"}`,
		"control char":  `{"id":"a1","hash":"` + strings.Repeat("0", 64) + `","user":"u\n"}`,
		"bad scope":     `{"id":"a1","hash":"` + strings.Repeat("0", 64) + `","user":"u","scopes":["a b"]}`,
		"not JSON":      `id=a1`,
	}
	for name, data := range cases {
		if _, err := parseKeyFile([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewKeyStore(filepath.Join(t.TempDir(), "missing.jsonl"), nil); err == nil {
		t.Error("a missing keys file was accepted at start")
	}
}

func TestParseExpiry(t *testing.T) {
	if got, err := parseExpiry("720h", testNow); err != nil || !got.Equal(testNow.Add(720*time.Hour)) {
		t.Fatalf("duration: %v, %v", got, err)
	}
	if got, err := parseExpiry("2027-01-02T03:04:05Z", testNow); err != nil || got.Year() != 2027 {
		t.Fatalf("RFC 3339: %v, %v", got, err)
	}
	if got, err := parseExpiry("", testNow); err != nil || got != nil {
		t.Fatalf("empty: %v, %v", got, err)
	}
	if _, err := parseExpiry("next week", testNow); err == nil {
		t.Fatal("garbage accepted")
	}
}
