package identity

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
)

// APIKeyPrefix starts every API key: it makes a leaked key recognisable to
// secret scanners, and keys are "lsk_<id>_<secret>" so the id selects the
// record without trying every hash.
const APIKeyPrefix = "lsk_"

// maxAPIKeyBytes bounds the header value looked at; real keys are ~64 bytes.
const maxAPIKeyBytes = 256

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

// KeyRecord is one line of the API keys file (JSON lines; blank lines and
// lines starting with # are skipped).
type KeyRecord struct {
	// ID is the key's public id, the middle part of the key.
	ID string `json:"id"`
	// Hash is the hex SHA-256 of the whole key. A fast hash is enough here,
	// unlike for passwords: keys carry 256 random bits, so the file is no
	// help to a brute-force attack, and a slow hash would cost every request.
	Hash string `json:"hash"`
	// User is the identity the key authenticates; several keys may share it,
	// which is how keys rotate.
	User string `json:"user"`
	// Tier and Tenant become {http.auth.user.tier} and {http.auth.user.tenant}.
	Tier   string `json:"tier,omitempty"`
	Tenant string `json:"tenant,omitempty"`
	// Scopes become {http.auth.user.scopes} and X-Auth-User-Scopes, e.g.
	// "scores:read:tenant" for a support tool of one tenant.
	Scopes []string `json:"scopes,omitempty"`
	// Expires, when set, is the instant from which the key is refused.
	Expires *time.Time `json:"expires,omitempty"`
}

type storedKey struct {
	KeyRecord
	sum [sha256.Size]byte
}

// KeyStore holds the API keys of one file and verifies keys against them.
// Verify is safe for concurrent use with Reload.
type KeyStore struct {
	path string
	now  func() time.Time

	keys atomic.Pointer[map[string]storedKey]

	mu      sync.Mutex // serialises Reload
	modTime time.Time
	size    int64
}

// NewKeyStore loads the keys at path; an empty path holds no keys. now is
// the clock for expiry, nil for time.Now.
func NewKeyStore(path string, now func() time.Time) (*KeyStore, error) {
	if now == nil {
		now = time.Now
	}
	s := &KeyStore{path: path, now: now}
	empty := map[string]storedKey{}
	s.keys.Store(&empty)
	if path == "" {
		return s, nil
	}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Len is the number of keys loaded.
func (s *KeyStore) Len() int { return len(*s.keys.Load()) }

// Reload reads the file again when its modification time or size changed,
// and reports whether it did. On error the keys loaded before stay in force.
func (s *KeyStore) Reload() (bool, error) {
	if s.path == "" {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	info, err := os.Stat(s.path)
	if err != nil {
		return false, fmt.Errorf("API keys file: %w", err)
	}
	if info.ModTime().Equal(s.modTime) && info.Size() == s.size {
		return false, nil
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return false, fmt.Errorf("API keys file: %w", err)
	}
	keys, err := parseKeyFile(data)
	if err != nil {
		return false, fmt.Errorf("API keys file %s: %w", s.path, err)
	}
	s.keys.Store(&keys)
	s.modTime, s.size = info.ModTime(), info.Size()
	return true, nil
}

// parseKeyFile reads JSON lines of KeyRecords.
func parseKeyFile(data []byte) (map[string]storedKey, error) {
	keys := make(map[string]storedKey)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var rec KeyRecord
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		k, err := checkRecord(rec)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, dup := keys[rec.ID]; dup {
			return nil, fmt.Errorf("line %d: id %q appears twice", n, rec.ID)
		}
		keys[rec.ID] = k
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return keys, nil
}

func checkRecord(rec KeyRecord) (storedKey, error) {
	if !keyIDPattern.MatchString(rec.ID) {
		return storedKey{}, fmt.Errorf("id %q is not 1 to 64 letters and digits", rec.ID)
	}
	if rec.User == "" {
		return storedKey{}, fmt.Errorf("key %s has no user", rec.ID)
	}
	if err := checkIdentity(rec.User, rec.Tier, rec.Tenant); err != nil {
		return storedKey{}, fmt.Errorf("key %s: %w", rec.ID, err)
	}
	scopes, err := CheckScopes(rec.Scopes)
	if err != nil {
		return storedKey{}, fmt.Errorf("key %s: %w", rec.ID, err)
	}
	rec.Scopes = scopes
	k := storedKey{KeyRecord: rec}
	sum, err := hex.DecodeString(rec.Hash)
	if err != nil || len(sum) != sha256.Size {
		return storedKey{}, fmt.Errorf("key %s: hash is not 64 hex digits", rec.ID)
	}
	copy(k.sum[:], sum)
	return k, nil
}

// ParseAPIKey splits "lsk_<id>_<secret>" and returns its id.
func ParseAPIKey(key string) (string, error) {
	if len(key) > maxAPIKeyBytes {
		return "", fmt.Errorf("key of %d bytes", len(key))
	}
	rest, ok := strings.CutPrefix(key, APIKeyPrefix)
	if !ok {
		return "", errors.New("no lsk_ prefix")
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || secret == "" || !keyIDPattern.MatchString(id) {
		return "", errors.New("not lsk_<id>_<secret>")
	}
	return id, nil
}

// Verify checks key and returns the identity it stands for.
func (s *KeyStore) Verify(key string) Outcome {
	if key == "" {
		return refuse(ResultMissing, "", nil)
	}
	id, err := ParseAPIKey(key)
	if err != nil {
		return refuse(ResultMalformed, "", err)
	}
	rec, ok := (*s.keys.Load())[id]
	if !ok {
		return refuse(ResultUnknownKey, id, nil)
	}
	sum := sha256.Sum256([]byte(key))
	if subtle.ConstantTimeCompare(sum[:], rec.sum[:]) != 1 {
		return refuse(ResultBadSignature, id, errors.New("secret does not match"))
	}
	// Expiry is told only to holders of the right secret.
	if rec.Expires != nil && !s.now().Before(*rec.Expires) {
		return refuse(ResultExpired, id, nil)
	}
	meta := map[string]string{"provider": providerAPIKey, "key_id": id}
	if rec.Tier != "" {
		meta["tier"] = rec.Tier
	}
	if rec.Tenant != "" {
		meta["tenant"] = rec.Tenant
	}
	if len(rec.Scopes) > 0 {
		meta["scopes"] = strings.Join(rec.Scopes, " ")
	}
	return Outcome{Result: ResultSuccess, User: caddyauth.User{ID: rec.User, Metadata: meta}, KeyID: id}
}

// NewAPIKey mints a key for rec (whose ID and Hash it fills in) and returns
// the key, which is shown once and stored nowhere.
func NewAPIKey(rec *KeyRecord) (string, error) {
	var id [8]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", err
	}
	rec.ID = hex.EncodeToString(id[:])
	key := APIKeyPrefix + rec.ID + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	rec.Hash = HashAPIKey(key)
	return key, nil
}

// HashAPIKey returns the hex SHA-256 of key, as the keys file stores it.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
