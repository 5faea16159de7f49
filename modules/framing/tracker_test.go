package framing

import (
	"strconv"
	"testing"
)

// TestParseLength: a Content-Length reads as net/http reads it.
func TestParseLength(t *testing.T) {
	for _, v := range []string{
		"0", "1", "0042", "9223372036854775807", "9223372036854775808", "18446744073709551616",
		"", " 1", "1 ", "+1", "-1", "1_0", "0x1", "1e3", "١",
	} {
		want, err := strconv.ParseUint(v, 10, 63)
		got, ok := parseLength([]byte(v))
		if ok != (err == nil) || ok && got != want {
			t.Errorf("parseLength(%q) = %d, %v; strconv: %d, %v", v, got, ok, want, err)
		}
	}
}
