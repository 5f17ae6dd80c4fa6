package specs

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1048576", 1 << 20}, {"512b", 512}, {"512B", 512},
		{"1k", 1024}, {"1K", 1024}, {"1kb", 1024}, {"1KB", 1024}, {"1KiB", 1024}, {"1kib", 1024},
		{"256m", 256 << 20}, {"256M", 256 << 20}, {"256MB", 256 << 20}, {"256MiB", 256 << 20},
		{"2g", 2 << 30}, {"2G", 2 << 30}, {"2GB", 2 << 30}, {"2GiB", 2 << 30},
		{" 6M ", 6 << 20}, {"1 G", 1 << 30}, {"8589934591g", 8589934591 << 30},
	}
	for _, tt := range tests {
		got, err := ParseMemory(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseMemoryRefuses(t *testing.T) {
	tests := []struct{ in, message string }{
		{"", "not a size"},
		{"lots", `"lots" is not a size; write a number with a unit, like 256M or 1G`},
		{"M", "not a size"},
		{"-1G", "negative"},
		{"+1G", "not a size"},
		{"1.5G", "whole number"},
		{"1,5G", "whole number"},
		{"1T", `unknown unit "T"`},
		{"1gibs", "unknown unit"},
		{"1e9", "unknown unit"},
		{"8589934592g", "too large"},
		{"99999999999999999999", "too large"},
	}
	for _, tt := range tests {
		got, err := ParseMemory(tt.in)
		if err == nil {
			t.Errorf("ParseMemory(%q) = %d, want an error", tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.message) {
			t.Errorf("ParseMemory(%q) error %q, want it to contain %q", tt.in, err, tt.message)
		}
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("ParseMemory(%q) error does not match ErrInvalidSpec", tt.in)
		}
	}
}

func TestFormatMemory(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0"}, {1, "1"}, {1000, "1000"}, {1024, "1K"}, {3072, "3K"}, {1536, "1536"},
		{6 << 20, "6M"}, {512 << 20, "512M"}, {1536 << 20, "1536M"}, {1 << 30, "1G"}, {-5, "-5"},
	}
	for _, tt := range tests {
		if got := FormatMemory(tt.in); got != tt.want {
			t.Errorf("FormatMemory(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormatMemoryRoundTrips(t *testing.T) {
	for _, n := range []int64{0, 1, 1023, 1024, 1025, 6 << 20, (6 << 20) + 1, 1 << 40, math.MaxInt64, math.MaxInt64 &^ (1<<30 - 1)} {
		back, err := ParseMemory(FormatMemory(n))
		if err != nil || back != n {
			t.Errorf("ParseMemory(FormatMemory(%d) = %q) = %d, %v", n, FormatMemory(n), back, err)
		}
	}
}
