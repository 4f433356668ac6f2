package capture

import (
	"strings"
	"testing"
	"time"
)

func TestLiveConfig_Defaults(t *testing.T) {
	c, err := LiveConfig{Interface: "eth0"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Snaplen != DefaultSnaplen || c.RingBytes != DefaultRingBytes || c.PollTimeout != DefaultPollTimeout || c.Promiscuous {
		t.Errorf("got %+v", c)
	}
}

func TestLiveConfig_Errors(t *testing.T) {
	cases := []struct {
		cfg  LiveConfig
		want string
	}{
		{LiveConfig{}, "no interface given"},
		{LiveConfig{Interface: "eth0", RingBytes: 32 << 10}, "ring size 32768 bytes is out of range (64 KiB to 256 MiB)"},
		{LiveConfig{Interface: "eth0", RingBytes: 257 << 20}, "ring size 269484032 bytes is out of range"},
		{LiveConfig{Interface: "eth0", Snaplen: -1}, "snaplen -1 is out of range"},
		{LiveConfig{Interface: "eth0", Snaplen: 262145}, "snaplen 262145 is out of range"},
		{LiveConfig{Interface: "eth0", PollTimeout: time.Microsecond}, "poll timeout 1µs is out of range"},
		{LiveConfig{Interface: "any", Promiscuous: true}, `promiscuous mode needs a named interface, not "any"`},
	}
	for _, c := range cases {
		_, err := c.cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestRingGeometry(t *testing.T) {
	cases := []struct {
		ring, page          int
		wantBlock, wantNumb int
	}{
		{DefaultRingBytes, 4096, 128 << 10, 16},
		{MinRingBytes, 4096, 32 << 10, 2},
		{MaxRingBytes, 4096, 2 << 20, 128},
		{100000, 4096, 32 << 10, 3},
		{MinRingBytes, 64 << 10, 64 << 10, 2}, // 64 KiB pages: one page per block, still 2 blocks
	}
	for _, c := range cases {
		b, n := ringGeometry(c.ring, c.page)
		if b != c.wantBlock || n != c.wantNumb || b%c.page != 0 {
			t.Errorf("ringGeometry(%d, %d) = %d × %d, want %d × %d", c.ring, c.page, n, b, c.wantNumb, c.wantBlock)
		}
	}
}
