package identity

import (
	"fmt"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
)

// Result is the outcome of one authentication attempt. The values form a
// fixed set: they are the `result` label of gateway_auth_requests_total and
// the `reason` of audit events, so adding one is a deliberate change.
type Result string

// The results. Every value but ResultSuccess is a refusal.
const (
	ResultSuccess         Result = "success"
	ResultMissing         Result = "missing"          // no credential for this provider
	ResultMalformed       Result = "malformed"        // not a well-formed token or key
	ResultOversized       Result = "oversized"        // bearer token larger than max_token_size
	ResultExpired         Result = "expired"          // exp (token) or expires (key) has passed
	ResultNotYetValid     Result = "not_yet_valid"    // nbf is in the future
	ResultIssuedInFuture  Result = "issued_in_future" // iat is in the future beyond the leeway
	ResultWrongIssuer     Result = "wrong_issuer"
	ResultWrongAudience   Result = "wrong_audience"
	ResultInvalidClaims   Result = "invalid_claims"    // a required claim missing or of the wrong type
	ResultAlgNotAllowed   Result = "alg_not_allowed"   // alg none, or an alg the key was not made for
	ResultUnknownKey      Result = "unknown_key"       // unknown kid, or unknown API key id
	ResultBadSignature    Result = "bad_signature"     // wrong signature, or wrong API key secret
	ResultUnsupportedCrit Result = "unsupported_crit"  // the token names crit header extensions; none is implemented
	ResultLifetimeTooLong Result = "lifetime_too_long" // exp lies further than max_lifetime past iat (or now)
)

// ResultInvalidKey is what a client is told, instead of ResultUnknownKey or
// ResultBadSignature, when an API key is refused: telling them apart would
// say whether a key id exists. Metrics and the audit log keep the precise
// result.
const ResultInvalidKey Result = "invalid_key"

// ClientReason is the reason a client is told for a refusal by provider.
func ClientReason(provider string, r Result) Result {
	if provider == providerAPIKey && (r == ResultUnknownKey || r == ResultBadSignature) {
		return ResultInvalidKey
	}
	return r
}

// Outcome is what a provider reports about one request.
type Outcome struct {
	Result Result
	// User is the authenticated identity; set only on success.
	User caddyauth.User
	// KeyID names the key involved (a JWT kid or an API key id) when the
	// credential got far enough to name one; it is never secret.
	KeyID string
	// Err is the internal cause, for the gateway's own logs only.
	Err error
}

// refuse returns a failed Outcome.
func refuse(r Result, keyID string, err error) Outcome {
	return Outcome{Result: r, KeyID: keyID, Err: err}
}

// Detail is the client-facing explanation of a refusal by provider. It never
// echoes the credential, and it does not tell an unknown API key id from a
// wrong secret, so that key ids cannot be probed.
func Detail(provider string, r Result, maxTokenBytes int) string {
	if provider == providerAPIKey {
		switch r {
		case ResultExpired:
			return "The API key has expired."
		case ResultMalformed:
			return "The API key is malformed."
		default:
			return "The API key is not valid."
		}
	}
	switch r {
	case ResultMissing:
		return "The request carries no credentials: send a bearer token in the Authorization header or an API key."
	case ResultMalformed:
		return "The bearer token is malformed."
	case ResultOversized:
		return fmt.Sprintf("The bearer token is larger than %d bytes.", maxTokenBytes)
	case ResultExpired:
		return "The bearer token has expired."
	case ResultNotYetValid:
		return "The bearer token is not valid yet."
	case ResultIssuedInFuture:
		return "The bearer token was issued in the future."
	case ResultWrongIssuer:
		return "The bearer token was issued by an issuer this gateway does not trust."
	case ResultWrongAudience:
		return "The bearer token is not meant for this audience."
	case ResultInvalidClaims:
		return "The bearer token lacks a required claim or has a claim of the wrong type."
	case ResultAlgNotAllowed:
		return "The bearer token's signing algorithm is not accepted."
	case ResultUnknownKey:
		return "The bearer token is signed with an unknown key."
	case ResultUnsupportedCrit:
		return "The bearer token names critical header extensions this gateway does not support."
	case ResultLifetimeTooLong:
		return "The bearer token is valid for longer than this gateway accepts."
	default:
		return "The bearer token's signature is invalid."
	}
}
