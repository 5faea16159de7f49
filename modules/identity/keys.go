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
	"slices"
	"strings"
)

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
