package identity

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/lexiscore/gateway/internal/cli"
	"github.com/lexiscore/gateway/internal/secret"
)

func init() {
	cli.Register(caddycmd.Command{
		Name:  "issue-token",
		Usage: "--sub <user> [--tier <tier>] [--tenant <tenant>] [--scope <scopes>] [--ttl <duration>] [--secret-env <VAR>] [--iss <issuer>] [--aud <audience>] [--kid <kid>]",
		Short: "Prints an HS256 JWT signed with the secret in an environment variable",
		Long: `
Prints a bearer token for the gateway's jwt provider, signed with HS256 by the
secret in the environment variable --secret-env (default GATEWAY_JWT_SECRET),
which must pass the same strength checks as at start-up. For demos and tests:
production tokens come from the identity provider.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("sub", "", "user id (sub claim); required")
			cmd.Flags().String("tier", "", "tier claim (e.g. free, pro)")
			cmd.Flags().String("tenant", "", "tenant claim")
			cmd.Flags().String("scope", "", "scope claim: space-separated scopes (e.g. scores:read:tenant)")
			cmd.Flags().Duration("ttl", time.Hour, "lifetime of the token")
			cmd.Flags().String("secret-env", "GATEWAY_JWT_SECRET", "environment variable holding the HMAC secret")
			cmd.Flags().String("iss", "", "iss claim")
			cmd.Flags().String("aud", "", "aud claim")
			cmd.Flags().String("kid", "", "kid header, for a secret configured as a jwt key")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdIssueToken)
		},
	})
	cli.Register(caddycmd.Command{
		Name:  "new-api-key",
		Usage: "--user <user> [--tier <tier>] [--tenant <tenant>] [--scopes <scopes>] [--expires <RFC 3339 time or duration>]",
		Short: "Mints an API key and prints it with its line for the keys file",
		Long: `
Prints a new API key on the first line (shown once: only its hash is kept)
and, on the second, the JSON line to append to the api_key provider's keys
file. --expires takes an RFC 3339 time or a duration from now (e.g. 720h).`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("user", "", "user the key authenticates; required")
			cmd.Flags().String("tier", "", "tier of the user")
			cmd.Flags().String("tenant", "", "tenant of the user")
			cmd.Flags().String("scopes", "", "space-separated scopes of the key (e.g. scores:read:tenant)")
			cmd.Flags().String("expires", "", "expiry: RFC 3339 time or duration from now")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdNewAPIKey)
		},
	})
	cli.Register(caddycmd.Command{
		Name:  "hash-api-key",
		Usage: "< key",
		Short: "Prints the hash of an API key read from standard input",
		Long: `
Reads one API key (lsk_<id>_<secret>) from standard input and prints the hex
SHA-256 that the keys file stores, e.g. to check a key against a line.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdHashAPIKey)
		},
	})
}

// TokenOptions are the claims of a token made by IssueToken.
type TokenOptions struct {
	Subject, Tier, Tenant, Issuer, Audience, KeyID string
	// Scopes become the space-separated scope claim.
	Scopes []string
	TTL    time.Duration
}

// IssueToken signs an HS256 token for o with key, valid from now.
func IssueToken(key []byte, o TokenOptions, now time.Time) (string, error) {
	if o.Subject == "" {
		return "", errors.New("the subject (--sub) is required")
	}
	if o.TTL <= 0 {
		return "", fmt.Errorf("the ttl %s is not positive", o.TTL)
	}
	if err := secret.Check(key); err != nil {
		return "", err
	}
	claims := jwt.MapClaims{
		"sub": o.Subject,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(o.TTL).Unix(),
	}
	if _, err := CheckScopes(o.Scopes); err != nil {
		return "", err
	}
	scope := strings.Join(o.Scopes, " ")
	for k, v := range map[string]string{"tier": o.Tier, "tenant": o.Tenant, "iss": o.Issuer, "aud": o.Audience, "scope": scope} {
		if v != "" {
			claims[k] = v
		}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	if o.KeyID != "" {
		t.Header["kid"] = o.KeyID
	}
	return t.SignedString(key)
}

func cmdIssueToken(fs caddycmd.Flags) (int, error) {
	env := fs.String("secret-env")
	key, err := secret.Read(env, "")
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("issue-token: %w", err)
	}
	token, err := IssueToken(key, TokenOptions{
		Subject:  fs.String("sub"),
		Tier:     fs.String("tier"),
		Tenant:   fs.String("tenant"),
		Issuer:   fs.String("iss"),
		Audience: fs.String("aud"),
		KeyID:    fs.String("kid"),
		Scopes:   strings.Fields(fs.String("scope")),
		TTL:      fs.Duration("ttl"),
	}, time.Now())
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("issue-token: %s: %w", env, err)
	}
	fmt.Println(token)
	return caddy.ExitCodeSuccess, nil
}

// parseExpiry reads an RFC 3339 time or a duration from now; "" is never.
func parseExpiry(s string, now time.Time) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return &t, nil
	}
	d, err := caddy.ParseDuration(s)
	if err != nil || d <= 0 {
		return nil, fmt.Errorf("--expires %q is neither an RFC 3339 time nor a positive duration", s)
	}
	t := now.Add(d).UTC().Truncate(time.Second)
	return &t, nil
}

func cmdNewAPIKey(fs caddycmd.Flags) (int, error) {
	rec := KeyRecord{User: fs.String("user"), Tier: fs.String("tier"), Tenant: fs.String("tenant"), Scopes: strings.Fields(fs.String("scopes"))}
	if rec.User == "" {
		return caddy.ExitCodeFailedStartup, errors.New("new-api-key: --user is required")
	}
	if err := checkIdentity(rec.User, rec.Tier, rec.Tenant); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("new-api-key: %w", err)
	}
	if _, err := CheckScopes(rec.Scopes); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("new-api-key: %w", err)
	}
	exp, err := parseExpiry(fs.String("expires"), time.Now())
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("new-api-key: %w", err)
	}
	rec.Expires = exp
	key, err := NewAPIKey(&rec)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("new-api-key: %w", err)
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("new-api-key: %w", err)
	}
	fmt.Fprintln(os.Stderr, "API key (shown once), then its line for the keys file:")
	fmt.Println(key)
	fmt.Println(string(line))
	return caddy.ExitCodeSuccess, nil
}

func cmdHashAPIKey(caddycmd.Flags) (int, error) {
	key, err := bufio.NewReader(io.LimitReader(os.Stdin, maxAPIKeyBytes+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("hash-api-key: reading standard input: %w", err)
	}
	key = strings.TrimRight(key, "\r\n")
	if _, err := ParseAPIKey(key); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("hash-api-key: %w", err)
	}
	fmt.Println(HashAPIKey(key))
	return caddy.ExitCodeSuccess, nil
}
