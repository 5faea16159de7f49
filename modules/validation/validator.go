package validation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
)

// Failure reasons: the bounded values of the reason label of
// gateway_validation_failures_total.
const (
	ReasonUnknownRoute     = "unknown_route"
	ReasonMethodNotAllowed = "method_not_allowed"
	ReasonMediaType        = "unsupported_media_type"
	ReasonTooLarge         = "body_too_large"
	ReasonParameters       = "invalid_parameters"
	ReasonBody             = "invalid_body"
	ReasonRequest          = "invalid_request" // both parameters and body
	ReasonUnreadable       = "body_unreadable"
	ReasonInternal         = "validator_error"
)

// RouteUnknown is the route label of requests that match no operation.
const RouteUnknown = "unknown"

// Defaults of Limits.
const (
	DefaultMaxBody   int64 = 1 << 20
	DefaultMaxUpload int64 = 26 << 20
)

// Limits bound request bodies. A zero field takes the value of the level
// above: the handler's limits for a route, the defaults for the handler.
type Limits struct {
	// MaxBody is the largest body, in bytes, of any media type but
	// multipart/*. Such bodies are held in memory and validated against
	// their schema, so keep it small. Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`
	// MaxUpload is the largest multipart/* body, in bytes. These are
	// streamed to the upstream and counted on the way, never held in
	// memory; their parts are not validated against the schema (the
	// backend does that). Default: 26 MiB (25 MiB of audio plus the form).
	MaxUpload int64 `json:"max_upload,omitempty"`
}

func (l Limits) or(d Limits) Limits {
	if l.MaxBody <= 0 {
		l.MaxBody = d.MaxBody
	}
	if l.MaxUpload <= 0 {
		l.MaxUpload = d.MaxUpload
	}
	return l
}

// Failure is a request that breaks the contract, described for the client.
type Failure struct {
	// Status is the HTTP status to answer with.
	Status int
	// Reason is one of the Reason constants.
	Reason string
	// Route names the operation (RouteUnknown when none matched).
	Route string
	// Type is the problem type slug.
	Type string
	// Detail is a client-safe sentence.
	Detail string
	// Violations lists each broken rule of a 400.
	Violations []Violation
	// Allow lists the methods a 405's path accepts.
	Allow []string
	// Cause is internal detail for logs, never shown to clients.
	Cause error
}

func (f *Failure) Error() string {
	if f.Cause != nil {
		return fmt.Sprintf("%s (%s): %s: %v", f.Reason, f.Route, f.Detail, f.Cause)
	}
	return fmt.Sprintf("%s (%s): %s", f.Reason, f.Route, f.Detail)
}

func (f *Failure) Unwrap() error { return f.Cause }

// Violation is one broken rule. Body violations carry an RFC 6901 JSON
// pointer into the body ("" is the whole body); parameter violations name
// the parameter and where it is (path, query, header or cookie).
type Violation struct {
	Pointer   string
	Parameter string
	In        string
	Detail    string
}

// MarshalJSON writes {"pointer","detail"} or {"parameter","in","detail"}.
func (v Violation) MarshalJSON() ([]byte, error) {
	if v.Parameter != "" {
		return json.Marshal(struct {
			Parameter string `json:"parameter"`
			In        string `json:"in"`
			Detail    string `json:"detail"`
		}{v.Parameter, v.In, v.Detail})
	}
	return json.Marshal(struct {
		Pointer string `json:"pointer"`
		Detail  string `json:"detail"`
	}{v.Pointer, v.Detail})
}

// Validator checks requests against a Contract. Safe for concurrent use.
type Validator struct {
	contract *Contract
	defaults Limits
	routes   map[string]Limits
}

// NewValidator returns a Validator with body limits: defaults for every
// route, overridden per route name (operationId) by routes, whose names
// must exist in the contract.
func NewValidator(c *Contract, defaults Limits, routes map[string]Limits) (*Validator, error) {
	v := &Validator{
		contract: c,
		defaults: defaults.or(Limits{MaxBody: DefaultMaxBody, MaxUpload: DefaultMaxUpload}),
		routes:   make(map[string]Limits, len(routes)),
	}
	known := c.RouteNames()
	for name, l := range routes {
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("route %q is not an operation of the OpenAPI document (known: %s)", name, strings.Join(known, ", "))
		}
		v.routes[name] = l.or(v.defaults)
	}
	return v, nil
}

// Result is what Validate learnt about an accepted request.
type Result struct {
	// Route names the operation.
	Route string
	// Upload is the counting body of a streamed (multipart) request, nil
	// otherwise: after the request was forwarded, Upload.Exceeded tells
	// whether it failed because the body passed its limit.
	Upload *Upload
}

// Validate checks r and prepares its body to be forwarded: a buffered body
// is replaced by a replayable copy, a streamed one by an Upload. A refusal
// is a *Failure.
func (v *Validator) Validate(ctx context.Context, r *http.Request) (res Result, err error) {
	route, pathParams, fail := v.contract.find(r)
	if fail != nil {
		return Result{Route: fail.Route}, fail
	}
	name := routeName(route.Method, route.Path, route.Operation)
	res.Route = name
	defer func() {
		// kin-openapi is a large library fed with arbitrary input: should it
		// panic, the request is refused, never forwarded unchecked.
		if p := recover(); p != nil {
			err = &Failure{Status: http.StatusBadRequest, Reason: ReasonInternal, Route: name, Type: "invalid-request",
				Detail: "The request could not be validated.", Cause: fmt.Errorf("validator panic: %v", p)}
		}
	}()
	lim := v.defaults
	if l, ok := v.routes[name]; ok {
		lim = l
	}
	refuse := func(status int, reason, typ, detail string, cause error) *Failure {
		return &Failure{Status: status, Reason: reason, Route: name, Type: typ, Detail: detail, Cause: cause}
	}

	var violations []Violation
	body := route.Operation.RequestBody
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody && (body == nil || body.Value == nil) {
		// A body of unknown length may still turn out to be empty.
		buf, err := readLimited(r.Body, r.ContentLength, 0)
		if r.ContentLength > 0 || errors.Is(err, errTooLarge) {
			return res, refuse(http.StatusUnsupportedMediaType, ReasonMediaType, "unsupported-media-type", "This operation takes no request body.", nil)
		}
		if err != nil {
			return res, refuse(http.StatusBadRequest, ReasonUnreadable, "invalid-request", "The request body could not be read.", err)
		}
		replay(r, buf)
		hasBody = false
	}
	streamed := false
	var mediaType string
	if hasBody {
		ct := r.Header.Get("Content-Type")
		mt, params, perr := mime.ParseMediaType(ct)
		if ct == "" || perr != nil || body.Value.Content.Get(mt) == nil {
			return res, refuse(http.StatusUnsupportedMediaType, ReasonMediaType, "unsupported-media-type",
				"Content-Type must be one of: "+strings.Join(mediaTypes(body.Value), ", ")+".", nil)
		}
		mediaType = mt
		streamed = strings.HasPrefix(mediaType, "multipart/")
		limit := lim.MaxBody
		if streamed {
			limit = lim.MaxUpload
		}
		if r.ContentLength > limit {
			return res, tooLarge(name, limit)
		}
		if streamed && params["boundary"] == "" {
			violations = append(violations, Violation{Parameter: "Content-Type", In: "header", Detail: "a multipart body needs a boundary parameter"})
		}
		if !streamed {
			buf, err := readLimited(r.Body, r.ContentLength, limit)
			if errors.Is(err, errTooLarge) {
				return res, tooLarge(name, limit)
			}
			if err != nil {
				return res, refuse(http.StatusBadRequest, ReasonUnreadable, "invalid-request", "The request body could not be read.", err)
			}
			replay(r, buf)
			hasBody = len(buf) > 0
			// RFC 8259 §8.1: JSON is UTF-8. encoding/json turns invalid
			// bytes into U+FFFD, so the schema would check another text
			// than the one the backend receives.
			switch {
			case !hasBody || !isJSON(mediaType):
			case !utf8.Valid(buf):
				violations = append(violations, Violation{Pointer: "", Detail: "the body is not valid UTF-8"})
			case !json.Valid(buf):
				violations = append(violations, Violation{Pointer: "", Detail: "the body is not a single valid JSON document"})
			}
		}
	}
	if !hasBody && body != nil && body.Value != nil && body.Value.Required {
		violations = append(violations, Violation{Pointer: "", Detail: "a request body is required"})
	}

	input := &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: pathParams,
		Route:      route,
		Options: &openapi3filter.Options{
			MultiError: true,
			// The request is forwarded exactly as sent (and signed as
			// such): defaults are the backend's business.
			SkipSettingDefaults: true,
			// Streamed bodies are only counted; missing bodies were
			// handled above; an invalid JSON body is reported once.
			ExcludeRequestBody: streamed || !hasBody || len(violations) > 0,
			// Authentication happens before validation, in its own handler.
			AuthenticationFunc:      openapi3filter.NoopAuthenticationFunc,
			SchemaValidationOptions: schemaOptions,
		},
	}
	if err := openapi3filter.ValidateRequest(ctx, input); err != nil {
		violations = append(violations, toViolations(err, nil)...)
	}
	if len(violations) > 0 {
		return res, invalid(name, violations)
	}
	if streamed {
		res.Upload = &Upload{body: r.Body, remaining: lim.MaxUpload, limit: lim.MaxUpload}
		r.Body = res.Upload
	}
	return res, nil
}

// schemaOptions replace kin-openapi's regexp for the "byte" format with the
// same check written as a loop: the backtracking regexp visited every
// character of an audio_base64 value several times and was most of the cost
// of validating a JSON upload.
var schemaOptions = []openapi3.SchemaValidationOption{
	openapi3.WithStringFormatValidators(map[string]openapi3.StringFormatValidator{
		"byte": openapi3.NewCallbackValidator(checkBase64),
	}),
}

// checkBase64 accepts what openapi3.FormatOfStringByte matches: characters of
// the standard or URL-safe base64 alphabets, then any number of '='.
func checkBase64(s string) error {
	i := 0
	for i < len(s) && isBase64Char(s[i]) {
		i++
	}
	for i < len(s) && s[i] == '=' {
		i++
	}
	if i != len(s) {
		return errors.New("not base64")
	}
	return nil
}

func isBase64Char(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

func tooLarge(route string, limit int64) *Failure {
	return &Failure{Status: http.StatusRequestEntityTooLarge, Reason: ReasonTooLarge, Route: route, Type: "body-too-large",
		Detail: fmt.Sprintf("The request body is larger than this operation allows (%d bytes).", limit)}
}

func invalid(route string, violations []Violation) *Failure {
	reason, params, bodies := ReasonRequest, false, false
	for _, v := range violations {
		params = params || v.Parameter != ""
		bodies = bodies || v.Parameter == ""
	}
	switch {
	case params && !bodies:
		reason = ReasonParameters
	case bodies && !params:
		reason = ReasonBody
	}
	detail := "The request does not match the API contract: 1 violation."
	if len(violations) > 1 {
		detail = fmt.Sprintf("The request does not match the API contract: %d violations.", len(violations))
	}
	return &Failure{Status: http.StatusBadRequest, Reason: reason, Route: route, Type: "invalid-request",
		Detail: detail, Violations: violations}
}

// maxViolations bounds the errors extension of one problem document.
const maxViolations = 20

// toViolations flattens kin-openapi's errors into client-safe violations.
// Messages come from the schema errors' Reason, which kin-openapi keeps free
// of the offending values; other causes get fixed sentences.
func toViolations(err error, in *openapi3filter.RequestError) []Violation {
	var out []Violation
	add := func(pointer []string, detail string) {
		if len(out) >= maxViolations {
			return
		}
		v := Violation{Detail: truncate(detail)}
		if in != nil && in.Parameter != nil {
			v.Parameter, v.In = in.Parameter.Name, in.Parameter.In
		} else {
			v.Pointer = jsonPointer(pointer)
		}
		out = append(out, v)
	}
	switch e := err.(type) {
	case openapi3.MultiError:
		for _, x := range e {
			out = append(out, toViolations(x, in)...)
		}
		if len(out) > maxViolations {
			out = out[:maxViolations]
		}
		return out
	case *openapi3filter.RequestError:
		if e.Err == nil {
			add(nil, e.Reason)
			return out
		}
		return toViolations(e.Err, e)
	}
	var se *openapi3.SchemaError
	var pe *openapi3filter.ParseError
	switch {
	case errors.As(err, &se):
		add(se.JSONPointer(), se.Reason)
	case errors.As(err, &pe):
		if in == nil || in.Parameter == nil {
			add(nil, "the body could not be decoded")
		} else if pe.Reason != "" {
			add(nil, "cannot be parsed: "+pe.Reason)
		} else {
			add(nil, "cannot be parsed")
		}
	case errors.Is(err, openapi3filter.ErrInvalidRequired):
		add(nil, "is required")
	case errors.Is(err, openapi3filter.ErrInvalidEmptyValue):
		add(nil, "must not be empty")
	default:
		add(nil, "is invalid")
	}
	return out
}

// pointerEscaper escapes a JSON pointer reference token (RFC 6901 §3).
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// jsonPointer encodes path segments as an RFC 6901 pointer.
func jsonPointer(segments []string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(pointerEscaper.Replace(s))
	}
	return b.String()
}

func truncate(s string) string {
	const maxLen = 200
	if len(s) <= maxLen {
		return s
	}
	s = s[:maxLen]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

func mediaTypes(rb *openapi3.RequestBody) []string {
	types := make([]string, 0, len(rb.Content))
	for t := range rb.Content {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

func isJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

var errTooLarge = errors.New("body too large")

// readLimited reads all of body, or fails with errTooLarge past limit bytes.
// declared is the announced length (-1: unknown), to allocate once.
func readLimited(body io.Reader, declared, limit int64) ([]byte, error) {
	capacity := int64(bytes.MinRead)
	if declared > 0 {
		// ReadFrom wants MinRead bytes of room to see EOF without growing.
		capacity = min(declared, limit+1) + bytes.MinRead
	}
	buf := bytes.NewBuffer(make([]byte, 0, capacity))
	if _, err := buf.ReadFrom(io.LimitReader(body, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// replay makes buf the body of r, readable again by each upstream attempt.
func replay(r *http.Request, buf []byte) {
	r.Body = io.NopCloser(bytes.NewReader(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	r.ContentLength = int64(len(buf))
	r.TransferEncoding = nil
	if len(buf) == 0 {
		r.Body = http.NoBody
	}
}

// Upload is a streamed request body that fails once it passes its limit,
// without buffering it.
type Upload struct {
	body      io.ReadCloser
	remaining int64
	limit     int64
	exceeded  atomic.Bool
}

// Read passes at most the limit through; the first byte beyond it turns
// into an *http.MaxBytesError.
func (u *Upload) Read(p []byte) (int, error) {
	if u.exceeded.Load() {
		return 0, &http.MaxBytesError{Limit: u.limit}
	}
	if int64(len(p)) > u.remaining+1 {
		p = p[:u.remaining+1]
	}
	n, err := u.body.Read(p)
	if int64(n) > u.remaining {
		u.exceeded.Store(true)
		n, u.remaining = int(u.remaining), 0
		return n, &http.MaxBytesError{Limit: u.limit}
	}
	u.remaining -= int64(n)
	return n, err
}

// Close closes the underlying body.
func (u *Upload) Close() error { return u.body.Close() }

// Exceeded reports whether the body passed its limit. Safe to call while
// another goroutine reads.
func (u *Upload) Exceeded() bool { return u.exceeded.Load() }

// Limit is the upload's limit in bytes.
func (u *Upload) Limit() int64 { return u.limit }
