package secret

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = "0f9e8d7c6b5a49382716abcdef0123456789abcdef"

func TestCheck(t *testing.T) {
	cases := []struct {
		secret string
		ok     bool
	}{
		{"", false},
		{"short", false},
		{"changemechangemechangemechangeme", false},
		{"my-Super-SECRET-value-0123456789abcd", false},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"0101010101010101010101010101010101010101", false},
		{"kUq3vZ1x9Yt0bNw8mC2r5LpA7eHdJ4sF6gQiRoTx", true},
		{good, true},
	}
	for _, tc := range cases {
		err := Check([]byte(tc.secret))
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.secret, err, tc.ok)
		}
		if err != nil && len(tc.secret) > 8 && strings.Contains(err.Error(), tc.secret) {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
}

// TestReadPrecedence pins the one rule every secret follows: a file or an
// environment variable, never both holding a value.
func TestReadPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte(good+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SECRET_TEST_SET", "from-env")
	t.Setenv("SECRET_TEST_EMPTY", "")
	cases := []struct {
		name, env, file string
		want            string
		wantErr         string
	}{
		{"file only, line break dropped", "", file, good, ""},
		{"env only", "SECRET_TEST_SET", "", "from-env", ""},
		{"file, named variable empty", "SECRET_TEST_EMPTY", file, good, ""},
		{"file, named variable unset", "SECRET_TEST_UNSET", file, good, ""},
		{"both hold a value", "SECRET_TEST_SET", file, "", "set only one"},
		{"variable unset", "SECRET_TEST_UNSET", "", "", "SECRET_TEST_UNSET is not set"},
		{"variable empty", "SECRET_TEST_EMPTY", "", "", "SECRET_TEST_EMPTY is not set"},
		{"missing file", "", filepath.Join(dir, "none"), "", "reading secret file"},
		{"nothing given", "", "", "", "neither"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(tc.env, tc.file)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Read = %q, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("Read = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestLoadRefusesWeakAndHintsWhenUnset(t *testing.T) {
	t.Setenv("SECRET_TEST_WEAK", "changemechangemechangemechangeme")
	if _, err := Load("SECRET_TEST_WEAK", ""); err == nil || !strings.Contains(err.Error(), "placeholder") {
		t.Errorf("Load(weak) = %v, want a placeholder error", err)
	}
	_, err := Load("SECRET_TEST_UNSET", "")
	if !errors.Is(err, ErrUnset) || !strings.Contains(err.Error(), Generate) {
		t.Errorf("Load(unset) = %v, want ErrUnset with the command to generate one", err)
	}
	t.Setenv("SECRET_TEST_GOOD", good)
	if got, err := Load("SECRET_TEST_GOOD", ""); err != nil || string(got) != good {
		t.Errorf("Load(good) = %q, %v", got, err)
	}
}
