package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// MinSecretBytes is the shortest HMAC secret accepted: 256 bits, the size of
// HS256's output, below which a secret is easier to guess than the MAC.
const MinSecretBytes = 32

// weakSecretWords mark a secret copied from an example or left at a default.
// Short words are left out: a random base64 secret would contain one too often.
var weakSecretWords = []string{"changeme", "change_me", "change-me", "secret", "password", "default", "example", "replaceme", "insecure"}

// minDistinctSecretBytes rejects secrets like "aaaa…" or "0101…": 32 random
// bytes in base64 or hex have far more distinct characters than this.
const minDistinctSecretBytes = 10

// CheckHMACSecret returns why secret is unfit to sign tokens, or nil. Its
// message never contains the secret.
func CheckHMACSecret(secret []byte) error {
	if len(secret) == 0 {
		return errors.New("the HMAC secret is empty")
	}
	if len(secret) < MinSecretBytes {
		return fmt.Errorf("the HMAC secret is %d bytes; at least %d are required (e.g. head -c 32 /dev/urandom | base64)", len(secret), MinSecretBytes)
	}
	lower := strings.ToLower(string(secret))
	for _, w := range weakSecretWords {
		if strings.Contains(lower, w) {
			return fmt.Errorf("the HMAC secret looks like a placeholder (it contains %q); generate a random one", w)
		}
	}
	var seen [256]bool
	distinct := 0
	for _, b := range secret {
		if !seen[b] {
			seen[b] = true
			distinct++
		}
	}
	if distinct < minDistinctSecretBytes {
		return fmt.Errorf("the HMAC secret has only %d distinct bytes; generate a random one", distinct)
	}
	return nil
}

// Key is one verification key of the JWT provider.
type Key struct {
	// Material is a []byte HMAC secret or a *rsa.PublicKey,
	// *ecdsa.PublicKey or ed25519.PublicKey.
	Material any
	// Algorithms are the JWT algs this key verifies.
	Algorithms []string
}

// algorithmsFor lists the JWT algs a key of this type can verify: binding
// the alg to the key type is what defeats algorithm confusion (an HS256
// token "signed" with an RSA public key's bytes).
func algorithmsFor(material any) ([]string, error) {
	switch k := material.(type) {
	case []byte:
		return []string{"HS256", "HS384", "HS512"}, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("the RSA key has %d bits; at least 2048 are required", k.N.BitLen())
		}
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}, nil
		case elliptic.P384():
			return []string{"ES384"}, nil
		case elliptic.P521():
			return []string{"ES512"}, nil
		}
		return nil, fmt.Errorf("the ECDSA curve %s is not supported", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return []string{"EdDSA"}, nil
	}
	return nil, fmt.Errorf("keys of type %T are not supported", material)
}

// newKey binds material to its algorithms, narrowed to only when given.
func newKey(material any, only []string) (Key, error) {
	algs, err := algorithmsFor(material)
	if err != nil {
		return Key{}, err
	}
	for _, a := range only {
		if !slices.Contains(algs, a) {
			return Key{}, fmt.Errorf("algorithm %q does not fit this key (it fits %s)", a, strings.Join(algs, ", "))
		}
	}
	if len(only) > 0 {
		algs = only
	}
	return Key{Material: material, Algorithms: algs}, nil
}

// errUnset is a key or secret whose environment variable is not set.
var errUnset = errors.New("is not set")

// readSource returns the bytes named by exactly one of env (an environment
// variable's name) or file (a path).
func readSource(env, file string) ([]byte, error) {
	switch {
	case env != "" && file != "":
		return nil, errors.New("set either env or file, not both")
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return nil, fmt.Errorf("environment variable %s %w", env, errUnset)
		}
		return []byte(v), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading key file: %w", err)
		}
		return b, nil
	}
	return nil, errors.New("no env or file given")
}

// parsePublicKey reads the first PEM block of data: a PKIX public key
// ("PUBLIC KEY"), a PKCS #1 RSA public key, or a certificate.
func parsePublicKey(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
}
