package main

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAssess(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name      string
		audio     string
		reference string
	}{
		{"one byte", "a", ""},
		{"speech", "some longer fake audio payload", ""},
		{"with reference", "a", "the rain in Spain"},
		{"binary", "\x00\xff\x10", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := submission{audioSHA256: sha256.Sum256([]byte(tc.audio)), audioBytes: int64(len(tc.audio)), language: "en-US", referenceText: tc.reference}
			a := assess(sub, "sc_1", "u", now)
			if b := assess(sub, "sc_2", "v", now.Add(time.Hour)); a.Score != b.Score || a.Fluency != b.Fluency || a.Pronunciation != b.Pronunciation ||
				a.Completeness != b.Completeness || a.Transcript != b.Transcript || a.AudioSHA256 != b.AudioSHA256 {
				t.Errorf("same audio, different assessments:\n%+v\n%+v", a, b)
			}
			for name, v := range map[string]float64{"score": a.Score, "fluency": a.Fluency, "pronunciation": a.Pronunciation, "completeness": a.Completeness} {
				if v < 0 || v > 100 || v != round1(v) {
					t.Errorf("%s = %v, want 0..100 with one decimal", name, v)
				}
			}
			if want := fmt.Sprintf("%x", sha256.Sum256([]byte(tc.audio))); a.AudioSHA256 != want {
				t.Errorf("audio_sha256 = %s, want %s", a.AudioSHA256, want)
			}
			if tc.reference != "" && a.Transcript != tc.reference {
				t.Errorf("transcript = %q, want the reference %q", a.Transcript, tc.reference)
			}
			if n := len(strings.Fields(a.Transcript)); tc.reference == "" && (n < 4 || n > 11) {
				t.Errorf("fake transcript %q has %d words, want 4 to 11", a.Transcript, n)
			}
			if !a.CreatedAt.Equal(now.Truncate(time.Millisecond)) || a.CreatedAt.Location() != time.UTC {
				t.Errorf("created_at = %v, want %v in UTC", a.CreatedAt, now)
			}
		})
	}
	x := assess(submission{audioSHA256: sha256.Sum256([]byte("x"))}, "", "", now)
	y := assess(submission{audioSHA256: sha256.Sum256([]byte("y"))}, "", "", now)
	if x.Score == y.Score && x.Transcript == y.Transcript {
		t.Errorf("different audio, same assessment %+v", x)
	}
}

func TestNewScoreID(t *testing.T) {
	a, b := newScoreID(), newScoreID()
	if a == b || !idPattern.MatchString(a) || !strings.HasPrefix(a, "sc_") {
		t.Errorf("ids %q, %q: want distinct valid sc_ ids", a, b)
	}
}
