package main

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"strings"
	"time"
)

// score is the assessment of one audio submission.
type score struct {
	ID            string    `json:"id"`
	UserID        string    `json:"user_id"`
	Language      string    `json:"language"`
	Score         float64   `json:"score"`
	Fluency       float64   `json:"fluency"`
	Pronunciation float64   `json:"pronunciation"`
	Completeness  float64   `json:"completeness"`
	Transcript    string    `json:"transcript"`
	AudioBytes    int64     `json:"audio_bytes"`
	AudioSHA256   string    `json:"audio_sha256"`
	CreatedAt     time.Time `json:"created_at"`
	// Tenant is the tenant of the user who submitted the score, for
	// scores:read:tenant; it is not part of the API.
	Tenant string `json:"-"`
}

// submission is a validated scoring request.
type submission struct {
	audioSHA256   [32]byte
	audioBytes    int64
	language      string
	referenceText string
}

// transcriptWords is the vocabulary of the fake transcripts.
var transcriptWords = [32]string{
	"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
	"she", "sells", "sea", "shells", "by", "shore", "peter", "piper",
	"picked", "peck", "of", "pickled", "peppers", "how", "much", "wood",
	"would", "a", "woodchuck", "chuck", "if", "could", "red", "lorry",
}

// assess scores a submission. The demo backend has no speech model: every
// value is derived from the SHA-256 of the audio, so the same audio always
// gets the same score, which is what gateway tests (caching, retries,
// idempotency) need to compare answers.
func assess(sub submission, id, userID string, now time.Time) score {
	h := sub.audioSHA256
	fluency := subScore(h[0:2])
	pronunciation := subScore(h[2:4])
	completeness := subScore(h[4:6])
	transcript := sub.referenceText
	if transcript == "" {
		transcript = fakeTranscript(h)
	}
	return score{
		ID:            id,
		UserID:        userID,
		Language:      sub.language,
		Score:         round1(0.4*pronunciation + 0.35*fluency + 0.25*completeness),
		Fluency:       fluency,
		Pronunciation: pronunciation,
		Completeness:  completeness,
		Transcript:    transcript,
		AudioBytes:    sub.audioBytes,
		AudioSHA256:   hex.EncodeToString(h[:]),
		CreatedAt:     now.UTC().Truncate(time.Millisecond),
	}
}

// subScore maps two hash bytes to 0..100 with one decimal.
func subScore(b []byte) float64 {
	return float64(binary.BigEndian.Uint16(b)%1001) / 10
}

// round1 rounds to one decimal, like the sub-scores.
func round1(x float64) float64 {
	return math.Round(x*10) / 10
}

// fakeTranscript derives 4 to 11 words from the hash.
func fakeTranscript(h [32]byte) string {
	n := 4 + int(h[6]%8)
	words := make([]string, n)
	for i := range words {
		words[i] = transcriptWords[int(h[7+i])%len(transcriptWords)]
	}
	return strings.Join(words, " ")
}
