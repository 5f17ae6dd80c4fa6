package specs

import (
	"math"
	"strconv"
	"strings"
)

const (
	kib = 1024
	mib = 1024 * kib
	gib = 1024 * mib
)

// MinMemoryBytes is the smallest memory limit Docker accepts (6M).
const MinMemoryBytes = 6 * mib

// ParseMemory reads a size: a whole number of bytes with an optional unit,
// b, k, m or g in either case, optionally followed by "b" or "ib" (k, kb,
// kib, KiB ...). Every unit is 1024-based, as in Docker and Compose: "1k" and
// "1KB" are both 1024 bytes. A plain number is bytes. Errors match
// ErrInvalidSpec.
func ParseMemory(s string) (int64, error) {
	text := strings.TrimSpace(s)
	digitsEnd := 0
	for digitsEnd < len(text) && text[digitsEnd] >= '0' && text[digitsEnd] <= '9' {
		digitsEnd++
	}
	digits, unit := text[:digitsEnd], text[digitsEnd:]
	switch {
	case strings.HasPrefix(text, "-"):
		return 0, invalidValuef("%q is negative; write a positive size, like 256M or 1G", s)
	case digits == "":
		return 0, invalidValuef("%q is not a size; write a number with a unit, like 256M or 1G", s)
	case strings.HasPrefix(unit, ".") || strings.HasPrefix(unit, ","):
		return 0, invalidValuef("%q is not a whole number; use a smaller unit instead of a fraction (1536M rather than 1.5G)", s)
	}
	multiplier, ok := memoryUnit(strings.ToLower(strings.TrimSpace(unit)))
	if !ok {
		return 0, invalidValuef("%q has an unknown unit %q; use b, k, m or g (1024-based), like 256M or 1G", s, strings.TrimSpace(unit))
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64/multiplier {
		return 0, invalidValuef("%q is too large", s)
	}
	return n * multiplier, nil
}

func memoryUnit(unit string) (int64, bool) {
	switch unit {
	case "", "b":
		return 1, true
	case "k", "kb", "kib":
		return kib, true
	case "m", "mb", "mib":
		return mib, true
	case "g", "gb", "gib":
		return gib, true
	}
	return 0, false
}

// FormatMemory writes bytes in the largest unit that divides it exactly
// (536870912 -> "512M", 3072 -> "3K", 1536 -> "1536"), so that
// ParseMemory(FormatMemory(n)) == n for every n >= 0.
func FormatMemory(bytes int64) string {
	switch {
	case bytes <= 0:
		return strconv.FormatInt(bytes, 10)
	case bytes%gib == 0:
		return strconv.FormatInt(bytes/gib, 10) + "G"
	case bytes%mib == 0:
		return strconv.FormatInt(bytes/mib, 10) + "M"
	case bytes%kib == 0:
		return strconv.FormatInt(bytes/kib, 10) + "K"
	}
	return strconv.FormatInt(bytes, 10)
}
