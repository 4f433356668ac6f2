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
		{LiveConfig{Interface: "eth0", PollTimeout: time.Microsecond}, "poll timeout 1µs is out of range (1ms to 1s)"},
		{LiveConfig{Interface: "eth0", PollTimeout: 2 * time.Second}, "poll timeout 2s is out of range"},
		{LiveConfig{Interface: "any", Promiscuous: true}, `promiscuous mode needs a named interface, not "any"`},
	}
	for _, c := range cases {
		_, err := c.cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.cfg, err, c.want)
		}
	}
}

// TestBlockTimeout keeps the ring's block timeout under the default poll
// timeout: an idle ReadPacket then means that the ring is empty.
func TestBlockTimeout(t *testing.T) {
	if blockTimeout >= DefaultPollTimeout {
		t.Errorf("block timeout %v, not under the default poll timeout %v", blockTimeout, DefaultPollTimeout)
	}
}

func TestRingGeometry(t *testing.T) {
	cases := []struct {
		ring, snaplen, page  int
		wantBlock, wantCount int
	}{
		{DefaultRingBytes, DefaultSnaplen, 4096, 128 << 10, 16},
		{8 << 20, DefaultSnaplen, 4096, 128 << 10, 64},
		{1 << 20, DefaultSnaplen, 4096, 64 << 10, 16},     // smaller blocks, still 16
		{512 << 10, DefaultSnaplen, 4096, 32 << 10, 16},   // the smallest blocks
		{MinRingBytes, DefaultSnaplen, 4096, 32 << 10, 2}, // fewer, not smaller
		{100000, DefaultSnaplen, 4096, 32 << 10, 3},
		{MaxRingBytes, DefaultSnaplen, 4096, 256 << 10, 1024}, // at most 1024 blocks
		{1 << 20, 65535, 4096, 128 << 10, 8},                  // one frame of 65535 bytes fits
		{DefaultRingBytes, 262144, 4096, 512 << 10, 4},
		{DefaultRingBytes, DefaultSnaplen, 64 << 10, 128 << 10, 16}, // 64 KiB pages
		{MinRingBytes, 262144, 4096, 0, 0},                          // one 512 KiB block would not fit
	}
	for _, c := range cases {
		b, n, err := ringGeometry(c.ring, c.snaplen, c.page)
		if c.wantCount == 0 {
			if err == nil {
				t.Errorf("ringGeometry(%d, %d, %d) = %d × %d, want an error", c.ring, c.snaplen, c.page, n, b)
			}
			continue
		}
		if err != nil || b != c.wantBlock || n != c.wantCount || b%c.page != 0 || b < c.snaplen+512 {
			t.Errorf("ringGeometry(%d, %d, %d) = %d × %d (%v), want %d × %d", c.ring, c.snaplen, c.page, n, b, err, c.wantCount, c.wantBlock)
		}
	}
}
