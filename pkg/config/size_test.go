package config

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"4194304", 4194304}, {"512KiB", 512 << 10}, {"2MiB", 2 << 20}, {"1GiB", 1 << 30},
		{"64K", 64 << 10}, {"256M", 256 << 20}, {"2G", 2 << 30},
		{"", 0}, {"0", 0}, {"-1MiB", 0}, {"2MB", 0}, {"1.5MiB", 0}, {"MiB", 0}, {"99999999999999GiB", 0},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if got != tt.want || (err != nil) != (tt.want == 0) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}
