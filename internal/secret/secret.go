// Package secret loads the shared secrets of the gateway and the scoring
// backend (JWT HMAC keys, request-signing keys) with one precedence rule and
// one set of strength rules, so that a secret refused for one purpose is
// refused for every other.
package secret

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MinBytes is the shortest secret accepted: 256 bits, the size of an
// HMAC-SHA256 output, below which a secret is easier to guess than the MAC.
const MinBytes = 32

// Generate is the command the errors suggest for making a good secret.
const Generate = "head -c 32 /dev/urandom | base64"

// weakWords mark a secret copied from an example or left at a default.
// Short words are left out: a random base64 secret would contain one too often.
var weakWords = []string{"changeme", "change_me", "change-me", "secret", "password", "default", "example", "replaceme", "insecure"}

// minDistinctBytes refuses secrets like "aaaa…" or "0101…": 32 random bytes
// in base64 or hex have far more distinct characters than this.
const minDistinctBytes = 10

// ErrUnset is an environment variable that is named but not set.
var ErrUnset = errors.New("is not set")

// Read returns the bytes held by the file at path file or by the environment
// variable named env, either of which may be empty (not given). The rule is
// the same for every secret: exactly one may hold a value, since which of two
// different secrets is in use should never be a guess. Trailing line breaks of
// a file are dropped (editors add them). Errors never contain the value.
func Read(env, file string) ([]byte, error) {
	value := ""
	if env != "" {
		value = os.Getenv(env)
	}
	switch {
	case file != "" && value != "":
		return nil, fmt.Errorf("both the file %s and the environment variable %s are set; set only one", file, env)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading secret file: %w", err)
		}
		return bytes.TrimRight(b, "\r\n"), nil
	case value != "":
		return []byte(value), nil
	case env != "":
		return nil, fmt.Errorf("environment variable %s %w", env, ErrUnset)
	}
	return nil, errors.New("neither an environment variable nor a file is given")
}

// Load reads a secret as Read does and refuses a weak one (see Check),
// naming where it came from.
func Load(env, file string) ([]byte, error) {
	b, err := Read(env, file)
	if errors.Is(err, ErrUnset) {
		return nil, fmt.Errorf("%w (generate one: %s)", err, Generate)
	}
	if err != nil {
		return nil, err
	}
	if err := Check(b); err != nil {
		if file != "" {
			return nil, fmt.Errorf("file %s: %w", file, err)
		}
		return nil, fmt.Errorf("environment variable %s: %w", env, err)
	}
	return b, nil
}

// Check returns why b is unfit as an HMAC secret, or nil: too short, a
// placeholder word, or too few distinct bytes. Its message never contains
// the secret.
func Check(b []byte) error {
	if len(b) == 0 {
		return errors.New("the secret is empty")
	}
	if len(b) < MinBytes {
		return fmt.Errorf("the secret is %d bytes; at least %d are required (generate one: %s)", len(b), MinBytes, Generate)
	}
	lower := strings.ToLower(string(b))
	for _, w := range weakWords {
		if strings.Contains(lower, w) {
			return fmt.Errorf("the secret looks like a placeholder (it contains %q); generate a random one: %s", w, Generate)
		}
	}
	var seen [256]bool
	distinct := 0
	for _, c := range b {
		if !seen[c] {
			seen[c] = true
			distinct++
		}
	}
	if distinct < minDistinctBytes {
		return fmt.Errorf("the secret has only %d distinct bytes; generate a random one: %s", distinct, Generate)
	}
	return nil
}
