package communityid

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// sharedDir is the shared test data next to the repository: the repo's
// parent directory holds "shared".
var sharedDir = filepath.Join("..", "..", "..", "shared", "community-id")

// baselineEntry is one line of the spec's baseline files: the tuple of one
// packet of the spec's sample captures and its expected Community ID. For
// ICMP and ICMPv6 the reference tool reports the pseudo ports: the type, and
// the counterpart type for two-way messages or the code for one-way ones.
// Ports are null for protocols without ports.
type baselineEntry struct {
	Proto       uint8   `json:"proto"`
	Saddr       string  `json:"saddr"`
	Daddr       string  `json:"daddr"`
	Sport       *uint16 `json:"sport"`
	Dport       *uint16 `json:"dport"`
	CommunityID string  `json:"communityid"`
}

func readBaseline(t *testing.T, name string) []baselineEntry {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(sharedDir, name))
	if err != nil {
		t.Fatalf("read baseline: %v", err)
	}
	var entries []baselineEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	if len(entries) == 0 {
		t.Fatalf("%s holds no entries", name)
	}
	return entries
}

// TestSum_SpecBaseline checks every entry of the spec's three baseline files
// (seed 0 base64, seed 1 base64, seed 0 hex).
func TestSum_SpecBaseline(t *testing.T) {
	if _, err := os.Stat(sharedDir); err != nil {
		t.Skipf("Community ID baseline not found at %s: %v", sharedDir, err)
	}
	files := []struct {
		name string
		seed uint16
		hex  bool
	}{
		{"baseline_deflt.json", 0, false},
		{"baseline_seed1.json", 1, false},
		{"baseline_nob64.json", 0, true},
	}
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			entries := readBaseline(t, f.name)
			for i, e := range entries {
				src, err := netip.ParseAddr(e.Saddr)
				if err != nil {
					t.Fatalf("entry %d: %v", i, err)
				}
				dst, err := netip.ParseAddr(e.Daddr)
				if err != nil {
					t.Fatalf("entry %d: %v", i, err)
				}
				if (e.Sport == nil) != (e.Dport == nil) {
					t.Fatalf("entry %d: only one port given", i)
				}
				var sport, dport uint16
				if e.Sport != nil {
					sport, dport = *e.Sport, *e.Dport
				}
				var got string
				if f.hex {
					got = SumHex(f.seed, e.Proto, src, dst, sport, dport)
				} else {
					got = Sum(f.seed, e.Proto, src, dst, sport, dport)
				}
				if got != e.CommunityID {
					t.Errorf("entry %d (proto %d %s:%d -> %s:%d): got %s, want %s",
						i, e.Proto, e.Saddr, sport, e.Daddr, dport, got, e.CommunityID)
				}
			}
		})
	}
}

// TestSum_ReferenceVectors holds test vectors of the reference
// implementation (corelight/pycommunityid tests/communityid_test.py), which
// cover cases the baseline captures do not: ICMP types without a
// counterpart (whose code is hashed), an echo reply with a non-zero code, a
// one-way ICMPv6 message in both directions, ports that differ per side,
// and a port-less protocol. Each gives seed 0 base64, seed 0 hex and seed 1
// base64.
func TestSum_ReferenceVectors(t *testing.T) {
	tests := []struct {
		name                string
		proto               uint8
		src, dst            string
		sport, dport        uint16
		deflt, nob64, seed1 string
	}{
		{"icmp echo", 1, "192.168.0.89", "192.168.0.1", 8, 0,
			"1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:5f4b27617a60c22bfd4d9b6a83ae2c833527e839", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="},
		{"icmp echo reply", 1, "192.168.0.1", "192.168.0.89", 0, 8,
			"1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:5f4b27617a60c22bfd4d9b6a83ae2c833527e839", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="},
		{"icmp type 20 code 0", 1, "192.168.0.89", "192.168.0.1", 20, 0,
			"1:3o2RFccXzUgjl7zDpqmY7yJi8rI=", "1:de8d9115c717cd482397bcc3a6a998ef2262f2b2", "1:lCXHHxavE1Vq3oX9NH5ladQg02o="},
		{"icmp type 20 code 1", 1, "192.168.0.89", "192.168.0.1", 20, 1,
			"1:tz/fHIDUHs19NkixVVoOZywde+I=", "1:b73fdf1c80d41ecd7d3648b1555a0e672c1d7be2", "1:Ie3wmFyxiEyikbsbcO03d2nh+PM="},
		{"icmp echo reply code ignored", 1, "192.168.0.1", "192.168.0.89", 0, 20,
			"1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:5f4b27617a60c22bfd4d9b6a83ae2c833527e839", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="},
		{"icmp6 neighbor solicitation", 58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 0,
			"1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:7461f21af8cc7e58e0e81a69c26ddb8342cef136", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="},
		{"icmp6 neighbor advertisement", 58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 136, 0,
			"1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:7461f21af8cc7e58e0e81a69c26ddb8342cef136", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="},
		{"icmp6 time exceeded one way", 58, "3ffe:507:0:1:260:97ff:fe07:69ea", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0,
			"1:NdobDX8PQNJbAyfkWxhtL2Pqp5w=", "1:35da1b0d7f0f40d25b0327e45b186d2f63eaa79c", "1:OlOWx9psIbBFi7lOCw/4MhlKR9M="},
		{"icmp6 time exceeded other way", 58, "3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:507:0:1:260:97ff:fe07:69ea", 3, 0,
			"1:/OGBt9BN1ofenrmSPWYicpij2Vc=", "1:fce181b7d04dd687de9eb9923d66227298a3d957", "1:Ij4ZxnC87/MXzhOjvH2vHu7LRmE="},
		{"sctp", 132, "192.168.170.8", "192.168.170.56", 7, 80,
			"1:jQgCxbku+pNGw8WPbEc/TS/uTpQ=", "1:8d0802c5b92efa9346c3c58f6c473f4d2fee4e94", "1:Y1/0jQg6e+I3ZwZZ9LP65DNbTXU="},
		{"sctp reverse", 132, "192.168.170.56", "192.168.170.8", 80, 7,
			"1:jQgCxbku+pNGw8WPbEc/TS/uTpQ=", "1:8d0802c5b92efa9346c3c58f6c473f4d2fee4e94", "1:Y1/0jQg6e+I3ZwZZ9LP65DNbTXU="},
		{"tcp", 6, "128.232.110.120", "66.35.250.204", 34855, 80,
			"1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:2d053da9994af81e45dca0e67afea6e4f3226eb8", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="},
		{"tcp pycommunityid issue 3", 6, "10.0.0.1", "10.0.0.2", 10, 11569,
			"1:SXBGMX1lBOwhhoDrZynfROxnhnM=", "1:497046317d6504ec218680eb6729df44ec678673", "1:HmBRGR+fUyXF4t8WEtal7Y0gEAo="},
		{"udp", 17, "8.8.8.8", "192.168.1.52", 53, 54585,
			"1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:77f14fe445b7c22635bc29dd87095e451287a304", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="},
		{"rsvp without ports", 46, "10.1.24.4", "10.1.12.1", 0, 0,
			"1:/nQI4Rh/TtY3mf0R2gJFBkVlgS4=", "1:fe7408e1187f4ed63799fd11da0245064565812e", "1:BK3BVW3U2eemuwVQVN3zd/GULno="},
		{"rsvp ports ignored", 46, "10.1.12.1", "10.1.24.4", 1234, 80,
			"1:/nQI4Rh/TtY3mf0R2gJFBkVlgS4=", "1:fe7408e1187f4ed63799fd11da0245064565812e", "1:BK3BVW3U2eemuwVQVN3zd/GULno="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := netip.MustParseAddr(tt.src), netip.MustParseAddr(tt.dst)
			if got := Sum(0, tt.proto, src, dst, tt.sport, tt.dport); got != tt.deflt {
				t.Errorf("seed 0: got %s, want %s", got, tt.deflt)
			}
			if got := SumHex(0, tt.proto, src, dst, tt.sport, tt.dport); got != tt.nob64 {
				t.Errorf("seed 0 hex: got %s, want %s", got, tt.nob64)
			}
			if got := Sum(1, tt.proto, src, dst, tt.sport, tt.dport); got != tt.seed1 {
				t.Errorf("seed 1: got %s, want %s", got, tt.seed1)
			}
		})
	}
}

// TestSum_Symmetric checks the spec's ordering rule: both directions of a
// flow give one ID, including when the addresses are equal and the ports
// decide, and a flow differs from one with the same endpoints on another
// protocol.
func TestSum_Symmetric(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("127.0.0.1")
	// The spec's README example.
	if x, y := Sum(0, 6, a, b, 1234, 80), Sum(0, 6, b, a, 80, 1234); x != y {
		t.Errorf("README example: got %s and %s, want equal", x, y)
	}
	if x, y := Sum(0, 17, a, a, 5353, 53), Sum(0, 17, a, a, 53, 5353); x != y {
		t.Errorf("equal addresses: got %s and %s, want equal", x, y)
	}
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	if x, y := Sum(0, 132, v6a, v6b, 9, 10), Sum(0, 132, v6b, v6a, 10, 9); x != y {
		t.Errorf("ipv6 sctp: got %s and %s, want equal", x, y)
	}
	if x, y := Sum(0, 6, a, b, 1234, 80), Sum(0, 17, a, b, 1234, 80); x == y {
		t.Errorf("tcp and udp flows share ID %s", x)
	}
	// A one-way ICMP message (destination unreachable) is not reordered.
	if x, y := Sum(0, 1, a, b, 3, 3), Sum(0, 1, b, a, 3, 3); x == y {
		t.Errorf("one-way icmp: both directions give %s, want different", x)
	}
}

func TestSum_InvalidAddress(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	if got := Sum(0, 6, netip.Addr{}, a, 1, 2); got != "" {
		t.Errorf("invalid src: got %q, want empty", got)
	}
	if got := SumHex(0, 6, a, netip.Addr{}, 1, 2); got != "" {
		t.Errorf("invalid dst: got %q, want empty", got)
	}
	b := []byte("x")
	if got := AppendSum(b, 0, 6, a, netip.Addr{}, 1, 2); string(got) != "x" {
		t.Errorf("AppendSum with invalid dst: got %q, want %q", got, "x")
	}
}

func TestAppendSum(t *testing.T) {
	src, dst := netip.MustParseAddr("192.168.1.52"), netip.MustParseAddr("8.8.8.8")
	b := AppendSum([]byte("id="), 0, 17, src, dst, 54585, 53)
	// From the spec's baseline (udp.pcap).
	if want := "id=1:d/FP5EW3wiY1vCndhwleRRKHowQ="; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	h := AppendSumHex([]byte("id="), 0, 17, src, dst, 54585, 53)
	if want := "id=1:77f14fe445b7c22635bc29dd87095e451287a304"; string(h) != want {
		t.Errorf("got %s, want %s", h, want)
	}

	buf := make([]byte, 0, 64)
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	allocs := testing.AllocsPerRun(100, func() {
		buf = AppendSum(buf[:0], 0, 6, v6a, v6b, 443, 50000)
		buf = AppendSumHex(buf[:0], 0, 58, v6a, v6b, 128, 0)
	})
	if allocs != 0 {
		t.Errorf("AppendSum with room in the buffer: got %v allocations, want 0", allocs)
	}
}

func BenchmarkAppendSum(b *testing.B) {
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendSum(buf[:0], 0, 6, src, dst, 443, 50000)
	}
}
