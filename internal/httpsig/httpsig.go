// Package httpsig signs requests from the gateway to its backends and verifies
// them at the backend, so that a backend reached directly, bypassing the
// gateway, refuses the request.
//
// It implements exactly one profile of RFC 9421 (HTTP Message Signatures)
// with an RFC 9530 Content-Digest, not the whole RFC:
//
//   - algorithm hmac-sha256 with a shared secret that passes secret.Check,
//     named by a key ID so that keys rotate (a Verifier holds several);
//   - one signature, labelled Label, whose covered components are, in this
//     order: "@method" "@authority" "@path" "@query" "content-digest", then whichever of
//     "x-request-id" "x-auth-user-id" "x-auth-user-tier" "x-auth-user-tenant"
//     "x-auth-user-scopes" the request carries;
//   - signature parameters created (Unix seconds), keyid, alg and nonce
//     (at least 128 random bits, fresh for every signature);
//   - Content-Digest carries the sha-256 of the body as sent (of the empty
//     body when there is none), so a body cannot be added, removed or changed.
//
// "@authority" is the Host the request is sent to, which the gateway sets to
// the upstream's address: a Verifier given its own Authorities refuses a
// request signed for another upstream, so a request captured on one backend
// cannot be replayed to another (each remembers only its own nonces).
//
// A Verifier accepts a request only if all of the above hold, the signature
// is no older than MaxAge (and not from further in the future than MaxSkew),
// every identity header present is covered, the body hashes to the signed
// digest, and the nonce has not been accepted before under the same key:
// the Verifier remembers nonces for as long as their signatures could pass
// the age check, so a captured request cannot be replayed to it.
package httpsig

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/lexiscore/gateway/internal/secret"
)

// The fixed parts of the profile.
const (
	// Algorithm is the value of the alg signature parameter.
	Algorithm = "hmac-sha256"
	// Label names the signature in Signature-Input and Signature.
	Label = "gateway"
	// maxNonceLen bounds the nonce a Verifier accepts, in bytes; the
	// Signer's are 26.
	maxNonceLen = 128
)

// Header names the scheme uses.
const (
	HeaderSignature      = "Signature"
	HeaderSignatureInput = "Signature-Input"
	HeaderContentDigest  = "Content-Digest"
)

// alwaysCovered are covered by every signature, in this order.
var alwaysCovered = []string{"@method", "@authority", "@path", "@query", "content-digest"}

// CoveredHeaders are covered whenever the request carries them, in this
// order; a verified request carrying one that the signature does not cover
// is refused, so none can be added in transit.
var CoveredHeaders = []string{"x-request-id", "x-auth-user-id", "x-auth-user-tier", "x-auth-user-tenant", "x-auth-user-scopes"}

// canonicalKeys are the http.Header keys of the header components every
// request may cover, computed once: canonicalizing a lower-case name
// allocates, and each attempt signs six of them.
var canonicalKeys = func() map[string]string {
	keys := map[string]string{"content-digest": http.CanonicalHeaderKey("content-digest")}
	for _, h := range CoveredHeaders {
		keys[h] = http.CanonicalHeaderKey(h)
	}
	return keys
}()

// headerKey is the http.Header key of a lower-case component name.
func headerKey(name string) string {
	if k, ok := canonicalKeys[name]; ok {
		return k
	}
	return http.CanonicalHeaderKey(name)
}

// Errors a Verifier returns, wrapped with detail. Each is safe to show to the
// caller; Reason maps them to a short label.
var (
	ErrUnsigned     = errors.New("request is not signed")
	ErrMalformed    = errors.New("signature fields are malformed")
	ErrAlgorithm    = errors.New("signature algorithm is not " + Algorithm)
	ErrUnknownKey   = errors.New("signature key id is unknown")
	ErrExpired      = errors.New("signature is too old")
	ErrFuture       = errors.New("signature is from the future")
	ErrCoverage     = errors.New("signature does not cover the required components")
	ErrAuthority    = errors.New("signature was made for another authority")
	ErrNoNonce      = errors.New("signature has no nonce")
	ErrBadSignature = errors.New("signature does not match")
	ErrReplayed     = errors.New("signature has been used before")
	ErrDigest       = errors.New("body does not match its Content-Digest")
	ErrBodyTooLarge = errors.New("body is too large")
	// ErrReplayCacheFull means the Verifier remembers as many nonces as it
	// may, all still within the window: the request is refused, not
	// accepted unremembered. It is a capacity problem, not a bad signature.
	ErrReplayCacheFull = errors.New("too many recent signatures to remember")
)

// reasons is the one table of verification errors: each sentinel with its
// bounded label for logs and metrics. Its text is the client-facing detail.
var reasons = []struct {
	err   error
	label string
}{
	{ErrUnsigned, "unsigned"}, {ErrMalformed, "malformed"}, {ErrAlgorithm, "algorithm"},
	{ErrUnknownKey, "unknown_key"}, {ErrExpired, "expired"}, {ErrFuture, "future"},
	{ErrCoverage, "coverage"}, {ErrAuthority, "authority"}, {ErrNoNonce, "no_nonce"},
	{ErrBadSignature, "bad_signature"},
	{ErrReplayed, "replayed"}, {ErrReplayCacheFull, "replay_cache_full"}, {ErrDigest, "digest"},
	{ErrBodyTooLarge, "too_large"},
}

// Reason returns a short, bounded label for a verification error, for logs
// and metrics: "unsigned", "malformed", "algorithm", "unknown_key",
// "expired", "future", "coverage", "authority", "no_nonce", "bad_signature", "replayed",
// "replay_cache_full", "digest", "too_large", or "error".
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return "error"
}

// detailOf is the client-facing sentence for err: the sentinel's text only,
// never the wrapped detail (which may echo header values).
func detailOf(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			s := r.err.Error()
			return strings.ToUpper(s[:1]) + s[1:] + "."
		}
	}
	return "The request could not be verified."
}

// Key is one shared secret and the ID that names it in the keyid parameter.
type Key struct {
	ID     string
	Secret []byte
}

// check reports a key that cannot be used, without revealing the secret.
func (k Key) check() error {
	if k.ID == "" {
		return errors.New("key id is empty")
	}
	for _, c := range k.ID {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("key id %q: only printable ASCII is allowed", k.ID)
		}
	}
	if err := secret.Check(k.Secret); err != nil {
		return fmt.Errorf("key %q: %w", k.ID, err)
	}
	return nil
}

// Signer signs requests with one key. It is safe for concurrent use.
type Signer struct {
	key Key
	now func() time.Time
	// nonce makes the nonce of each signature: rand.Text, 26 base32
	// characters carrying 130 random bits, which need no escaping in an
	// sf-string. Tests fix it.
	nonce func() string
	// macs holds HMAC states keyed with key.Secret, reset for each
	// signature instead of keyed anew (four allocations per attempt).
	macs sync.Pool
}

// NewSigner returns a Signer for key; now is the clock (nil: time.Now).
func NewSigner(key Key, now func() time.Time) (*Signer, error) {
	if err := key.check(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	s := &Signer{key: Key{ID: key.ID, Secret: append([]byte(nil), key.Secret...)}, now: now, nonce: rand.Text}
	s.macs.New = func() any { return hmac.New(sha256.New, s.key.Secret) }
	return s, nil
}

// KeyID returns the ID of the signing key.
func (s *Signer) KeyID() string { return s.key.ID }

// Sign sets Content-Digest from bodySum, the SHA-256 of the body r will
// carry, then Signature-Input and Signature. Any such headers already on r
// are replaced. Every call makes a new nonce, and a Verifier accepts each
// nonce once: sign every attempt of a request anew.
func (s *Signer) Sign(r *http.Request, bodySum [sha256.Size]byte) error {
	r.Header.Set(HeaderContentDigest, FormatDigest(bodySum))
	covered := make([]string, 0, len(alwaysCovered)+len(CoveredHeaders))
	covered = append(covered, alwaysCovered...)
	for _, h := range CoveredHeaders {
		if _, ok := r.Header[canonicalKeys[h]]; ok {
			covered = append(covered, h)
		}
	}
	sigParams := serializeParams(covered, s.now().Unix(), s.key.ID, s.nonce())
	base, err := signatureBase(r, covered, sigParams)
	if err != nil {
		return err
	}
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(base)
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	s.macs.Put(m)
	r.Header.Set(HeaderSignatureInput, Label+"="+sigParams)
	r.Header.Set(HeaderSignature, sfBinary(Label+"=", sum))
	return nil
}

// sfBinary is prefix followed by sum as an RFC 8941 byte sequence
// (":base64:"), built in one allocation.
func sfBinary(prefix string, sum [sha256.Size]byte) string {
	var b strings.Builder
	b.Grow(len(prefix) + base64.StdEncoding.EncodedLen(len(sum)) + 2)
	b.WriteString(prefix)
	b.WriteByte(':')
	var enc [44]byte
	base64.StdEncoding.Encode(enc[:], sum[:])
	b.Write(enc[:])
	b.WriteByte(':')
	return b.String()
}

// Options tune a Verifier. The zero value is usable.
type Options struct {
	// MaxAge is how old a signature's created time may be. Longer tolerates
	// slower networks and clock drift, but the replay cache must remember
	// nonces that much longer (see ReplayCacheSize). Default: 30s.
	MaxAge time.Duration
	// MaxSkew is how far in the future created may be, for clocks that run
	// ahead of the verifier's. Default: 5s.
	MaxSkew time.Duration
	// MemoryLimit is how much of a body VerifyMiddleware holds in memory
	// while hashing it; larger bodies are spooled to a temporary file.
	// Default: 1 MiB.
	MemoryLimit int64
	// MaxBody is the largest body VerifyMiddleware accepts (413 above).
	// Default: 64 MiB.
	MaxBody int64
	// SpoolDir holds spooled bodies. Default: os.TempDir().
	SpoolDir string
	// ReplayCacheSize is how many nonces the Verifier remembers at most, to
	// refuse a signature seen before. A nonce is kept until its signature's
	// created time is more than MaxAge old, so a steady R requests a second
	// need about R × MaxAge entries; each costs 20 to 40 bytes. When the
	// cache is full of nonces that are all still within the window, new
	// requests are refused with ErrReplayCacheFull (503 from
	// VerifyMiddleware) until the oldest second ages out: forgetting a nonce
	// early would let its request be replayed. Default:
	// DefaultReplayCacheSize (2^20: 35,000 requests a second for 30 s).
	ReplayCacheSize int
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Authorities are the host[:port] values this verifier answers to: a
	// request whose (signed) Host is not one of them is refused with
	// ErrAuthority, so that a signature made for one upstream is refused
	// by every other. Compared without regard to case. Empty: any.
	Authorities []string
}

// Verifier checks signatures made with any of its keys, so that during a
// rotation both the old and the new key are accepted. It is safe for
// concurrent use.
type Verifier struct {
	keys        map[string][]byte
	opts        Options
	authorities map[string]bool
	replays     *replayCache
}

// NewVerifier returns a Verifier accepting keys.
func NewVerifier(keys []Key, opts Options) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("no verification key")
	}
	v := &Verifier{keys: make(map[string][]byte, len(keys)), opts: opts}
	for _, k := range keys {
		if err := k.check(); err != nil {
			return nil, err
		}
		if _, dup := v.keys[k.ID]; dup {
			return nil, fmt.Errorf("key id %q given twice", k.ID)
		}
		v.keys[k.ID] = append([]byte(nil), k.Secret...)
	}
	if v.opts.MaxAge <= 0 {
		v.opts.MaxAge = 30 * time.Second
	}
	if v.opts.MaxSkew <= 0 {
		v.opts.MaxSkew = 5 * time.Second
	}
	if v.opts.MemoryLimit <= 0 {
		v.opts.MemoryLimit = 1 << 20
	}
	if v.opts.MaxBody <= 0 {
		v.opts.MaxBody = 64 << 20
	}
	if v.opts.Now == nil {
		v.opts.Now = time.Now
	}
	if len(opts.Authorities) > 0 {
		v.authorities = make(map[string]bool, len(opts.Authorities))
		for _, a := range opts.Authorities {
			v.authorities[strings.ToLower(a)] = true
		}
	}
	if v.opts.ReplayCacheSize <= 0 {
		v.opts.ReplayCacheSize = DefaultReplayCacheSize
	}
	v.replays = newReplayCache(v.opts.MaxAge, v.opts.ReplayCacheSize)
	return v, nil
}

// Verified describes an accepted signature.
type Verified struct {
	// KeyID is the key that made the signature.
	KeyID string
	// Created is when the request was signed.
	Created time.Time
	// Nonce is the signature's nonce, now spent.
	Nonce string
	// Digest is the signed SHA-256 of the body, which the caller must
	// compare with the body it reads (VerifyMiddleware does).
	Digest [sha256.Size]byte
}

// Verify checks the signature of r over everything but the body itself: the
// body must then hash to Verified.Digest (see CheckBody). It reads nothing.
//
// A signature that verifies spends its nonce: verifying it again, within
// MaxAge, fails with ErrReplayed. The nonce is spent before the body is
// read, so that a replayed upload is refused without being spooled; a
// request whose body then fails CheckBody has spent its nonce too.
func (v *Verifier) Verify(r *http.Request) (*Verified, error) {
	inputs, sigs := r.Header.Values(HeaderSignatureInput), r.Header.Values(HeaderSignature)
	if len(inputs) == 0 || len(sigs) == 0 {
		return nil, ErrUnsigned
	}
	inputDict, err := httpsfv.UnmarshalDictionary(inputs)
	if err != nil {
		return nil, fmt.Errorf("%w: Signature-Input: %w", ErrMalformed, err)
	}
	sigDict, err := httpsfv.UnmarshalDictionary(sigs)
	if err != nil {
		return nil, fmt.Errorf("%w: Signature: %w", ErrMalformed, err)
	}
	inputMember, ok1 := inputDict.Get(Label)
	sigMember, ok2 := sigDict.Get(Label)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%w: no signature labelled %q", ErrUnsigned, Label)
	}
	sigParams, ok := inputMember.(httpsfv.InnerList)
	if !ok {
		return nil, fmt.Errorf("%w: Signature-Input member is not an inner list", ErrMalformed)
	}
	sigItem, ok := sigMember.(httpsfv.Item)
	if !ok {
		return nil, fmt.Errorf("%w: Signature member is not an item", ErrMalformed)
	}
	got, ok := sigItem.Value.([]byte)
	if !ok {
		return nil, fmt.Errorf("%w: Signature member is not a byte sequence", ErrMalformed)
	}

	alg, _ := sigParams.Params.Get("alg")
	if alg != Algorithm {
		return nil, ErrAlgorithm
	}
	keyID, _ := sigParams.Params.Get("keyid")
	kid, ok := keyID.(string)
	if !ok {
		return nil, fmt.Errorf("%w: keyid missing", ErrMalformed)
	}
	secret, ok := v.keys[kid]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
	}
	createdParam, _ := sigParams.Params.Get("created")
	createdUnix, ok := createdParam.(int64)
	if !ok {
		return nil, fmt.Errorf("%w: created missing", ErrMalformed)
	}
	created := time.Unix(createdUnix, 0)
	now := v.opts.Now()
	if age := now.Sub(created); age > v.opts.MaxAge {
		return nil, fmt.Errorf("%w: created %s ago, at most %s allowed", ErrExpired, age.Truncate(time.Second), v.opts.MaxAge)
	} else if -age > v.opts.MaxSkew {
		return nil, fmt.Errorf("%w: created %s ahead", ErrFuture, (-age).Truncate(time.Second))
	}
	nonceParam, ok := sigParams.Params.Get("nonce")
	if !ok {
		return nil, ErrNoNonce
	}
	nonce, ok := nonceParam.(string)
	if !ok || nonce == "" || len(nonce) > maxNonceLen {
		return nil, fmt.Errorf("%w: nonce is not a string of 1 to %d characters", ErrMalformed, maxNonceLen)
	}

	covered, err := coveredComponents(sigParams)
	if err != nil {
		return nil, err
	}
	if err := checkCoverage(r, covered); err != nil {
		return nil, err
	}
	if a := authority(r); v.authorities != nil && !v.authorities[a] {
		return nil, fmt.Errorf("%w: %q", ErrAuthority, a)
	}
	digest, err := ParseDigest(r.Header.Values(HeaderContentDigest))
	if err != nil {
		return nil, err
	}
	// The signature parameters as signed are their canonical RFC 8941
	// serialization, which is what Signer writes.
	params, err := httpsfv.Marshal(sigParams)
	if err != nil {
		return nil, fmt.Errorf("%w: signature parameters: %w", ErrMalformed, err)
	}
	base, err := signatureBase(r, covered, params)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(got, mac(secret, base)) {
		return nil, ErrBadSignature
	}
	// Only now, so that forged signatures cannot fill the cache.
	if err := v.replays.add(kid, nonce, createdUnix, now); err != nil {
		return nil, err
	}
	return &Verified{KeyID: kid, Created: created, Nonce: nonce, Digest: digest}, nil
}

// CheckBody compares sum, the SHA-256 of the body as received, with the
// signed digest, in constant time.
func (vd *Verified) CheckBody(sum [sha256.Size]byte) error {
	if !hmac.Equal(sum[:], vd.Digest[:]) {
		return ErrDigest
	}
	return nil
}

// coveredComponents lists the component identifiers of sigParams, refusing
// parameterized identifiers (such as ;sf or ;req), which the profile does
// not use.
func coveredComponents(sigParams httpsfv.InnerList) ([]string, error) {
	covered := make([]string, 0, len(sigParams.Items))
	for _, it := range sigParams.Items {
		name, ok := it.Value.(string)
		if !ok || len(it.Params.Names()) > 0 {
			return nil, fmt.Errorf("%w: unsupported component identifier", ErrMalformed)
		}
		covered = append(covered, name)
	}
	return covered, nil
}

// checkCoverage requires the always-covered components and every identity
// header that r carries.
func checkCoverage(r *http.Request, covered []string) error {
	has := func(name string) bool {
		for _, c := range covered {
			if c == name {
				return true
			}
		}
		return false
	}
	for _, c := range alwaysCovered {
		if !has(c) {
			return fmt.Errorf("%w: %q not covered", ErrCoverage, c)
		}
	}
	for _, h := range CoveredHeaders {
		if _, present := r.Header[canonicalKeys[h]]; present && !has(h) {
			return fmt.Errorf("%w: %q not covered", ErrCoverage, h)
		}
	}
	return nil
}

// signatureBase builds the RFC 9421 §2.5 signature base of r; sigParams is
// the serialized inner list of the Signature-Input member.
func signatureBase(r *http.Request, covered []string, sigParams string) ([]byte, error) {
	b := make([]byte, 0, 256+len(sigParams))
	for _, name := range covered {
		value, err := componentValue(r, name)
		if err != nil {
			return nil, err
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `": `...)
		b = append(b, value...)
		b = append(b, '\n')
	}
	b = append(b, `"@signature-params": `...)
	b = append(b, sigParams...)
	return b, nil
}

// sfStringEscaper escapes the content of an RFC 8941 sf-string.
var sfStringEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// serializeParams writes the signature parameters as RFC 8941 serializes
// them (what httpsfv.Marshal makes of the parsed field, checked by the
// tests), without building the structure first. Component names are fixed
// lower-case identifiers and key IDs printable ASCII, so only '"' and '\'
// need escaping; nonces are base32 and need none.
func serializeParams(covered []string, created int64, keyID, nonce string) string {
	var b strings.Builder
	size := len(`);created=;keyid="";alg="";nonce=""`) + 20 + len(Algorithm) + len(keyID) + len(nonce) + 2
	for _, c := range covered {
		size += len(c) + 3
	}
	b.Grow(size)
	b.WriteByte('(')
	for i, c := range covered {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('"')
		b.WriteString(c)
		b.WriteByte('"')
	}
	b.WriteString(");created=")
	var digits [20]byte
	b.Write(strconv.AppendInt(digits[:0], created, 10))
	b.WriteString(`;keyid="`)
	b.WriteString(sfStringEscaper.Replace(keyID))
	b.WriteString(`";alg="` + Algorithm + `";nonce="`)
	b.WriteString(nonce)
	b.WriteByte('"')
	return b.String()
}

// componentValue is the RFC 9421 §2 value of one covered component.
func componentValue(r *http.Request, name string) (string, error) {
	switch name {
	case "@method":
		return r.Method, nil
	case "@authority":
		return authority(r), nil
	case "@path":
		if p := r.URL.EscapedPath(); p != "" {
			return p, nil
		}
		return "/", nil
	case "@query":
		return "?" + r.URL.RawQuery, nil
	}
	if strings.HasPrefix(name, "@") || name != strings.ToLower(name) {
		return "", fmt.Errorf("%w: unsupported component %q", ErrMalformed, name)
	}
	values, ok := r.Header[headerKey(name)]
	if !ok {
		return "", fmt.Errorf("%w: covered header %q is absent", ErrCoverage, name)
	}
	// §2.1: each field line's value trimmed, the lines joined by ", ".
	if len(values) == 1 {
		return strings.Trim(values[0], " \t"), nil
	}
	trimmed := make([]string, len(values))
	for i, v := range values {
		trimmed[i] = strings.Trim(v, " \t")
	}
	return strings.Join(trimmed, ", "), nil
}

// authority is the RFC 9421 §2.2.3 @authority of r: its Host (the URL's
// when unset, as on a client request), lower-cased.
func authority(r *http.Request) string {
	if r.Host != "" {
		return strings.ToLower(r.Host)
	}
	return strings.ToLower(r.URL.Host)
}

func mac(secret, base []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(base)
	return m.Sum(nil)
}

// FormatDigest is the Content-Digest field value for a SHA-256 sum.
func FormatDigest(sum [sha256.Size]byte) string {
	return sfBinary("sha-256=", sum)
}

// ParseDigest returns the sha-256 member of Content-Digest field lines.
func ParseDigest(lines []string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	if len(lines) == 0 {
		return sum, fmt.Errorf("%w: no Content-Digest", ErrDigest)
	}
	d, err := httpsfv.UnmarshalDictionary(lines)
	if err != nil {
		return sum, fmt.Errorf("%w: Content-Digest: %w", ErrMalformed, err)
	}
	m, ok := d.Get("sha-256")
	if !ok {
		return sum, fmt.Errorf("%w: Content-Digest has no sha-256", ErrDigest)
	}
	it, ok := m.(httpsfv.Item)
	b, ok2 := it.Value.([]byte)
	if !ok || !ok2 || len(b) != sha256.Size {
		return sum, fmt.Errorf("%w: Content-Digest sha-256 is not a 32-byte sequence", ErrMalformed)
	}
	copy(sum[:], b)
	return sum, nil
}
