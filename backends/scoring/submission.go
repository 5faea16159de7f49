package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Limits of a scoring request.
const (
	// maxAudioBytes is the largest audio accepted: 25 MiB.
	maxAudioBytes = 25 << 20
	// maxJSONBody bounds a JSON request: base64 makes 25 MiB of audio
	// about 33.4 MiB, and the other fields are small.
	maxJSONBody = 34 << 20
	// maxMultipartBody bounds a multipart request: the audio plus room for
	// the other fields and the part headers.
	maxMultipartBody = maxAudioBytes + 1<<20
	// maxReferenceRunes bounds reference_text, in characters.
	maxReferenceRunes = 2000
	// maxFieldBytes bounds a multipart text field: reference_text in UTF-8.
	maxFieldBytes   = 4 * maxReferenceRunes
	defaultLanguage = "en-US"
)

// languagePattern accepts "ll" and "ll-CC" tags, as the OpenAPI document does.
var languagePattern = regexp.MustCompile(`^[a-z]{2}(-[A-Z]{2})?$`)

// readSubmission reads and validates a scoring request in either of its
// encodings. The audio is hashed as it is read and never kept: scoring only
// needs its digest and size.
func readSubmission(w http.ResponseWriter, r *http.Request) (submission, error) {
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return submission{}, unsupportedMediaType(err)
	}
	var (
		sub  submission
		lang *string
	)
	switch mediaType {
	case "application/json":
		sub, lang, err = readJSONSubmission(http.MaxBytesReader(w, r.Body, maxJSONBody))
	case "multipart/form-data":
		r.Body = http.MaxBytesReader(w, r.Body, maxMultipartBody)
		sub, lang, err = readMultipartSubmission(r)
	default:
		return submission{}, unsupportedMediaType(nil)
	}
	if err != nil {
		return submission{}, err
	}
	return sub, validateSubmission(&sub, lang)
}

func unsupportedMediaType(err error) *apiError {
	return &apiError{
		status: http.StatusUnsupportedMediaType,
		typ:    probUnsupportedMediaType,
		detail: "The body must be application/json or multipart/form-data.",
		err:    err,
	}
}

func audioTooLarge(err error) *apiError {
	return &apiError{
		status: http.StatusRequestEntityTooLarge,
		typ:    probTooLarge,
		detail: fmt.Sprintf("The audio must not exceed %d bytes.", maxAudioBytes),
		err:    err,
	}
}

// bodyError classifies an error reading the request body: too large, or
// malformed.
func bodyError(detail string, err error) *apiError {
	if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return &apiError{
			status: http.StatusRequestEntityTooLarge,
			typ:    probTooLarge,
			detail: fmt.Sprintf("The request body must not exceed %d bytes.", mbe.Limit),
			err:    err,
		}
	}
	return badRequest(detail, err)
}

// jsonSubmission is the JSON encoding of a scoring request. Pointers tell
// absent members from empty ones.
type jsonSubmission struct {
	AudioBase64   *string `json:"audio_base64"`
	Language      *string `json:"language"`
	ReferenceText *string `json:"reference_text"`
}

// readJSONSubmission reads the JSON encoding. It returns the language member
// separately because absent and invalid differ.
func readJSONSubmission(body io.Reader) (submission, *string, error) {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	var req jsonSubmission
	if err := dec.Decode(&req); err != nil {
		return submission{}, nil, bodyError("The body is not a valid score request: "+err.Error(), err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return submission{}, nil, bodyError("The body must hold a single JSON object.", err)
	}
	if req.AudioBase64 == nil {
		return submission{}, nil, badRequest("audio_base64 is required.", nil)
	}
	h := sha256.New()
	n, err := io.Copy(h, base64.NewDecoder(base64.StdEncoding, strings.NewReader(*req.AudioBase64)))
	if err != nil {
		return submission{}, nil, badRequest("audio_base64 is not valid base64.", err)
	}
	if n > maxAudioBytes {
		return submission{}, nil, audioTooLarge(nil)
	}
	sub := submission{audioBytes: n}
	h.Sum(sub.audioSHA256[:0])
	if req.ReferenceText != nil {
		sub.referenceText = *req.ReferenceText
	}
	return sub, req.Language, nil
}

// readMultipartSubmission reads the multipart encoding part by part, so that
// only the text fields are ever held in memory.
func readMultipartSubmission(r *http.Request) (submission, *string, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return submission{}, nil, badRequest("The body is not a valid multipart form.", err)
	}
	var (
		sub       submission
		lang      *string
		sawAudio  bool
		sawFields = map[string]bool{}
	)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return submission{}, nil, bodyError("The body is not a valid multipart form.", err)
		}
		name := part.FormName()
		if sawFields[name] {
			return submission{}, nil, badRequest(fmt.Sprintf("The form has more than one %q part.", name), nil)
		}
		sawFields[name] = true
		switch name {
		case "audio":
			sawAudio = true
			sub.audioSHA256, sub.audioBytes, err = hashAudio(part)
		case "language":
			var v string
			v, err = readField(part, name)
			lang = &v
		case "reference_text":
			sub.referenceText, err = readField(part, name)
		default:
			err = badRequest(fmt.Sprintf("The form has an unknown part %q.", name), nil)
		}
		part.Close()
		if err != nil {
			return submission{}, nil, err
		}
	}
	if !sawAudio {
		return submission{}, nil, badRequest(`The form has no "audio" part.`, nil)
	}
	return sub, lang, nil
}

// hashAudio reads the audio part, hashing it, and fails once it exceeds the
// audio limit without reading further.
func hashAudio(part *multipart.Part) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(part, maxAudioBytes+1))
	if err != nil {
		return [32]byte{}, 0, bodyError("The audio part could not be read.", err)
	}
	if n > maxAudioBytes {
		return [32]byte{}, 0, audioTooLarge(nil)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, n, nil
}

// readField reads a text part of the form, bounded by maxFieldBytes.
func readField(part *multipart.Part, name string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
	if err != nil {
		return "", bodyError(fmt.Sprintf("The %q part could not be read.", name), err)
	}
	if len(b) > maxFieldBytes {
		return "", badRequest(fmt.Sprintf("The %q part is too long.", name), nil)
	}
	return string(b), nil
}

// validateSubmission checks the fields common to both encodings and applies
// the default language.
func validateSubmission(sub *submission, lang *string) error {
	if sub.audioBytes == 0 {
		return badRequest("The audio must not be empty.", nil)
	}
	sub.language = defaultLanguage
	if lang != nil {
		if !languagePattern.MatchString(*lang) {
			return badRequest(`language must look like "en" or "en-US".`, nil)
		}
		sub.language = *lang
	}
	if !utf8.ValidString(sub.referenceText) {
		return badRequest("reference_text must be valid UTF-8.", nil)
	}
	if utf8.RuneCountInString(sub.referenceText) > maxReferenceRunes {
		return badRequest(fmt.Sprintf("reference_text must not exceed %d characters.", maxReferenceRunes), nil)
	}
	return nil
}
