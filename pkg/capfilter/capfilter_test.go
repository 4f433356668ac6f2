package capfilter

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name            string
		port, ip, proto string
		want            Spec
	}{
		{"empty", "", "", "", Spec{}},
		{"port", "53", "", "", Spec{Port: 53, HasPort: true}},
		{"port with spaces", " 8080 ", "", "", Spec{Port: 8080, HasPort: true}},
		{"highest port", "65535", "", "", Spec{Port: 65535, HasPort: true}},
		{"ipv4 address", "", "10.0.0.1", "", Spec{Prefix: netip.MustParsePrefix("10.0.0.1/32"), HasIP: true}},
		{"ipv4 cidr", "", "10.0.0.0/8", "", Spec{Prefix: netip.MustParsePrefix("10.0.0.0/8"), HasIP: true}},
		{"ipv4 cidr host bits dropped", "", "10.1.2.3/8", "", Spec{Prefix: netip.MustParsePrefix("10.0.0.0/8"), HasIP: true}},
		{"ipv6 address", "", "2001:db8::1", "", Spec{Prefix: netip.MustParsePrefix("2001:db8::1/128"), HasIP: true}},
		{"ipv6 cidr", "", "2001:DB8::/32", "", Spec{Prefix: netip.MustParsePrefix("2001:db8::/32"), HasIP: true}},
		{"ipv4-mapped stays ipv6", "", "::ffff:10.0.0.1", "", Spec{Prefix: netip.MustParsePrefix("::ffff:10.0.0.1/128"), HasIP: true}},
		{"all ipv4", "", "0.0.0.0/0", "", Spec{Prefix: netip.MustParsePrefix("0.0.0.0/0"), HasIP: true}},
		{"tcp", "", "", "tcp", Spec{Proto: 6, HasProto: true}},
		{"TCP upper case", "", "", "TCP", Spec{Proto: 6, HasProto: true}},
		{"udp", "", "", "udp", Spec{Proto: 17, HasProto: true}},
		{"icmp", "", "", "icmp", Spec{Proto: 1, HasProto: true}},
		{"icmpv6", "", "", "ICMPv6", Spec{Proto: 58, HasProto: true}},
		{"icmp6", "", "", "icmp6", Spec{Proto: 58, HasProto: true}},
		{"sctp", "", "", "Sctp", Spec{Proto: 132, HasProto: true}},
		{"number", "", "", "47", Spec{Proto: 47, HasProto: true}},
		{"number zero", "", "", "0", Spec{Proto: 0, HasProto: true}},
		{"number 255", "", "", "255", Spec{Proto: 255, HasProto: true}},
		{"all three", "53", "192.168.0.0/16", "udp", Spec{Port: 53, HasPort: true,
			Prefix: netip.MustParsePrefix("192.168.0.0/16"), HasIP: true, Proto: 17, HasProto: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.port, tt.ip, tt.proto)
			if err != nil {
				t.Fatalf("Parse(%q, %q, %q): %v", tt.port, tt.ip, tt.proto, err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		name            string
		port, ip, proto string
		want            string
	}{
		{"port too big", "70000", "", "", `--filter-port: "70000" is not a port (1-65535)`},
		{"port zero", "0", "", "", `--filter-port: "0" is not a port (1-65535)`},
		{"port negative", "-1", "", "", `--filter-port: "-1" is not a port (1-65535)`},
		{"port name", "http", "", "", `--filter-port: "http" is not a port (1-65535)`},
		{"port hex", "0x35", "", "", `--filter-port: "0x35" is not a port (1-65535)`},
		{"ip garbage", "", "example.com", "", `--filter-ip: "example.com" is not an IPv4 or IPv6 address or CIDR prefix`},
		{"ip bad length", "", "10.0.0.0/33", "", `--filter-ip: "10.0.0.0/33" is not an IPv4 or IPv6 address or CIDR prefix`},
		{"ip zone", "", "fe80::1%eth0", "", `--filter-ip: "fe80::1%eth0" is not an IPv4 or IPv6 address or CIDR prefix (zones are not allowed)`},
		{"ip partial", "", "10.0.0", "", `--filter-ip: "10.0.0" is not an IPv4 or IPv6 address or CIDR prefix`},
		{"proto unknown name", "", "", "gre", `--filter-protocol: "gre" is not a protocol (tcp, udp, icmp, icmpv6, sctp or a number 0-255)`},
		{"proto too big", "", "", "256", `--filter-protocol: "256" is not a protocol (tcp, udp, icmp, icmpv6, sctp or a number 0-255)`},
		{"proto negative", "", "", "-6", `--filter-protocol: "-6" is not a protocol (tcp, udp, icmp, icmpv6, sctp or a number 0-255)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.port, tt.ip, tt.proto)
			if err == nil {
				t.Fatalf("Parse(%q, %q, %q) = %+v, want error", tt.port, tt.ip, tt.proto, s)
			}
			if err.Error() != tt.want {
				t.Errorf("got %q, want %q", err, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *capfilter.Error", err)
			}
		})
	}

	t.Run("every bad flag is reported", func(t *testing.T) {
		_, err := Parse("99999", "nope", "nope")
		if err == nil {
			t.Fatal("got no error")
		}
		for _, flag := range []string{"--filter-port", "--filter-ip", "--filter-protocol"} {
			if !strings.Contains(err.Error(), flag) {
				t.Errorf("error %q does not name %s", err, flag)
			}
		}
		var pe *Error
		if !errors.As(err, &pe) || pe.Flag != "--filter-port" || pe.Value != "99999" {
			t.Errorf("errors.As: got %+v, want the --filter-port error", pe)
		}
	})
}

func TestSpec_String(t *testing.T) {
	tests := []struct {
		port, ip, proto string
		want            string
	}{
		{"", "", "", ""},
		{"53", "", "", "port 53"},
		{"", "10.1.0.0/16", "", "net 10.1.0.0/16"},
		{"", "10.0.0.1", "", "host 10.0.0.1"},
		{"", "2001:db8::/32", "", "net 2001:db8::/32"},
		{"", "2001:db8::1", "", "host 2001:db8::1"},
		{"", "", "udp", "proto udp"},
		{"", "", "icmp6", "proto icmpv6"},
		{"", "", "47", "proto 47"},
		{"53", "10.0.0.0/8", "udp", "port 53 and net 10.0.0.0/8 and proto udp"},
	}
	for _, tt := range tests {
		if got := mustParse(t, tt.port, tt.ip, tt.proto).String(); got != tt.want {
			t.Errorf("Parse(%q, %q, %q).String(): got %q, want %q", tt.port, tt.ip, tt.proto, got, tt.want)
		}
	}
}

func TestSpec_IsEmpty(t *testing.T) {
	if !(Spec{}).IsEmpty() {
		t.Error("zero Spec: got not empty")
	}
	for _, s := range []Spec{{HasPort: true}, {HasIP: true}, {HasProto: true}} {
		if s.IsEmpty() {
			t.Errorf("%+v: got empty", s)
		}
	}
}

func TestSpec_Compile(t *testing.T) {
	t.Run("empty spec is ret snaplen for any link type", func(t *testing.T) {
		for _, lt := range []uint16{0, 1, 101, 105, 65535} {
			raw, err := Spec{}.Compile(lt, 1500)
			if err != nil {
				t.Fatalf("link type %d: %v", lt, err)
			}
			want, _ := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 1500}})
			if len(raw) != 1 || raw[0] != want[0] {
				t.Errorf("link type %d: got %v, want %v", lt, raw, want)
			}
		}
	})
	t.Run("unsupported link type", func(t *testing.T) {
		_, err := mustParse(t, "53", "", "").Compile(105, 1500) // IEEE 802.11
		if !errors.Is(err, ErrLinkType) {
			t.Errorf("got %v, want ErrLinkType", err)
		}
	})
	t.Run("snaplen zero", func(t *testing.T) {
		if _, err := mustParse(t, "53", "", "").Compile(1, 0); err == nil {
			t.Error("got no error")
		}
	})
	t.Run("invalid prefix", func(t *testing.T) {
		if _, err := (Spec{HasIP: true}).Compile(1, 1500); err == nil {
			t.Error("got no error")
		}
		if (Spec{HasIP: true}).Match(101, ipv4(v4opts{proto: 6, src: "10.0.0.1", dst: "10.0.0.2"}, nil)) {
			t.Error("Match with an invalid prefix: got true")
		}
	})
	// The largest programs (every filter, an IPv6 prefix needing all four
	// words) must assemble, with every jump in range, for every link type.
	t.Run("largest programs", func(t *testing.T) {
		for _, ip := range []string{"2001:db8::1:0/127", "10.0.0.0/9"} {
			s := mustParse(t, "443", ip, "tcp")
			for _, lt := range supportedLinkTypes {
				raw, err := s.Compile(lt, 262144)
				if err != nil {
					t.Fatalf("link type %d: %v", lt, err)
				}
				if len(raw) > 4096 { // BPF_MAXINSNS
					t.Errorf("link type %d: %d instructions", lt, len(raw))
				}
				vmFilter(t, s, lt, 262144)
			}
		}
	})
}

// supportedLinkTypes are the link types Compile accepts.
var supportedLinkTypes = []uint16{0, 1, 12, 14, 101, 108, 113, 228, 229, 276}

// TestSpec_Frames checks Match and the compiled program, run in the BPF VM,
// against hand-made frames whose verdicts follow from tcpdump's semantics.
func TestSpec_Frames(t *testing.T) {
	udp4 := func(src, dst string, sport, dport uint16) []byte {
		return ipv4(v4opts{proto: 17, src: src, dst: dst}, ports(sport, dport))
	}
	tcp6 := func(src, dst string, sport, dport uint16) []byte {
		return ipv6(6, src, dst, ports(sport, dport))
	}
	dns4 := udp4("10.0.0.1", "10.0.0.2", 5353, 53)
	web4 := ipv4(v4opts{proto: 6, src: "192.168.1.2", dst: "93.184.216.34"}, ports(40000, 443))
	dns6 := ipv6(17, "2001:db8::1", "2001:db8:1::53", ports(40000, 53))
	web6 := tcp6("2001:db8::1", "2606:2800:220:1::1", 40000, 443)
	eth4 := func(ip []byte) []byte { return ether(0x0800, nil, ip) }
	eth6 := func(ip []byte) []byte { return ether(0x86dd, nil, ip) }

	type tc struct {
		name            string
		port, ip, proto string
		link            uint16
		frame           []byte
		want            bool
	}
	tests := []tc{
		// port
		{"port: udp dst", "53", "", "", 1, eth4(dns4), true},
		{"port: udp src", "53", "", "", 1, eth4(udp4("10.0.0.2", "10.0.0.1", 53, 5353)), true},
		{"port: other ports", "53", "", "", 1, eth4(web4), false},
		{"port: tcp", "443", "", "", 1, eth4(web4), true},
		{"port: sctp", "7", "", "", 1, eth4(ipv4(v4opts{proto: 132, src: "10.0.0.1", dst: "10.0.0.2"}, ports(7, 7))), true},
		{"port: icmp has no ports", "53", "", "", 1, eth4(ipv4(v4opts{proto: 1, src: "10.0.0.1", dst: "10.0.0.2"}, ports(53, 53))), false},
		{"port: first fragment", "53", "", "", 1, eth4(ipv4(v4opts{proto: 17, src: "10.0.0.1", dst: "10.0.0.2", mf: true}, ports(1, 53))), true},
		{"port: later fragment", "53", "", "", 1, eth4(ipv4(v4opts{proto: 17, src: "10.0.0.1", dst: "10.0.0.2", fragOff: 185}, ports(53, 53))), false},
		{"port: after ip options", "53", "", "", 1, eth4(ipv4(v4opts{proto: 17, src: "10.0.0.1", dst: "10.0.0.2", options: 4}, ports(9, 53))), true},
		{"port: options are not ports", "257", "", "", 1, eth4(ipv4(v4opts{proto: 17, src: "10.0.0.1", dst: "10.0.0.2", options: 4}, ports(9, 53))), false},
		{"port: ipv6 udp", "53", "", "", 1, eth6(dns6), true},
		{"port: ipv6 tcp src", "40000", "", "", 1, eth6(web6), true},
		{"port: ipv6 behind hop-by-hop not seen", "53", "", "", 1, eth6(ipv6(0, "2001:db8::1", "2001:db8::2", ext6(17, ports(53, 53)))), false},
		{"port: ipv6 behind fragment header not seen", "53", "", "", 1, eth6(ipv6(44, "2001:db8::1", "2001:db8::2", ext6(17, ports(53, 53)))), false},
		{"port: udp cut after source port", "53", "", "", 1, eth4(udp4("10.0.0.2", "10.0.0.1", 53, 5353))[:14+20+2], true},
		{"port: udp cut before destination port", "53", "", "", 1, eth4(dns4)[:14+20+3], false},
		{"port: udp cut before ports", "53", "", "", 1, eth4(dns4)[:14+20], false},
		// address
		{"net: ipv4 src", "", "10.0.0.0/8", "", 1, eth4(dns4), true},
		{"net: ipv4 dst", "", "93.184.216.0/24", "", 1, eth4(web4), true},
		{"net: ipv4 neither", "", "172.16.0.0/12", "", 1, eth4(web4), false},
		{"host: ipv4", "", "10.0.0.2", "", 1, eth4(dns4), true},
		{"host: ipv4 other", "", "10.0.0.3", "", 1, eth4(dns4), false},
		{"net: ipv4 prefix never matches ipv6", "", "0.0.0.0/0", "", 1, eth6(dns6), false},
		{"net: ipv4 any", "", "0.0.0.0/0", "", 1, eth4(dns4), true},
		{"net: ipv6 src", "", "2001:db8::/32", "", 1, eth6(web6), true},
		{"net: ipv6 dst", "", "2606:2800::/32", "", 1, eth6(web6), true},
		{"net: ipv6 odd length", "", "2001:db8:1::/49", "", 1, eth6(dns6), true},
		{"net: ipv6 odd length other", "", "2001:db8:1:8000::/49", "", 1, eth6(dns6), false},
		{"host: ipv6", "", "2001:db8:1::53", "", 1, eth6(dns6), true},
		{"host: ipv6 other", "", "2001:db8:1::54", "", 1, eth6(dns6), false},
		{"net: ipv6 prefix never matches ipv4", "", "::/0", "", 1, eth4(dns4), false},
		{"net: ipv4-mapped prefix is ipv6", "", "::ffff:10.0.0.1", "", 1, eth4(dns4), false},
		{"net: ipv6 any", "", "::/0", "", 1, eth6(dns6), true},
		{"net: src cut short", "", "10.0.0.0/8", "", 1, eth4(dns4)[:14+15], false},
		{"net: /8 needs one word of the source", "", "10.0.0.0/8", "", 1, eth4(udp4("10.0.0.1", "8.8.8.8", 1, 2))[:14+16], true},
		{"net: ipv6 /32 needs one word of the source", "", "2001:db8::/32", "", 1, eth6(web6)[:14+12], true},
		{"net: ipv6 /33 needs two words", "", "2001:db8::/33", "", 1, eth6(web6)[:14+12], false},
		{"net: /0 needs no address", "", "::/0", "", 1, eth6(web6)[:14], true},
		// protocol
		{"proto: tcp", "", "", "tcp", 1, eth4(web4), true},
		{"proto: udp is not tcp", "", "", "tcp", 1, eth4(dns4), false},
		{"proto: later fragments too", "", "", "udp", 1, eth4(ipv4(v4opts{proto: 17, src: "10.0.0.1", dst: "10.0.0.2", fragOff: 185}, nil)), true},
		{"proto: ipv6 tcp", "", "", "tcp", 1, eth6(web6), true},
		{"proto: ipv6 fragment header looked through", "", "", "udp", 1, eth6(ipv6(44, "2001:db8::1", "2001:db8::2", ext6(17, ports(1, 2)))), true},
		{"proto: ipv6 fragment header itself", "", "", "44", 1, eth6(ipv6(44, "2001:db8::1", "2001:db8::2", ext6(17, ports(1, 2)))), true},
		{"proto: ipv6 other extension not walked", "", "", "udp", 1, eth6(ipv6(0, "2001:db8::1", "2001:db8::2", ext6(17, ports(1, 2)))), false},
		{"proto: hop-by-hop is 0", "", "", "0", 1, eth6(ipv6(0, "2001:db8::1", "2001:db8::2", ext6(17, nil))), true},
		{"proto: icmp", "", "", "icmp", 1, eth4(ipv4(v4opts{proto: 1, src: "10.0.0.1", dst: "10.0.0.2"}, []byte{8, 0, 0, 0})), true},
		{"proto: icmpv6", "", "", "icmpv6", 1, eth6(ipv6(58, "fe80::1", "ff02::1", []byte{135, 0, 0, 0})), true},
		{"proto: gre by number", "", "", "47", 1, eth4(ipv4(v4opts{proto: 47, src: "10.0.0.1", dst: "10.0.0.2"}, nil)), true},
		{"proto: ip header cut after protocol", "", "", "udp", 1, eth4(dns4)[:14+10], true},
		{"proto: ip header cut before protocol", "", "", "udp", 1, eth4(dns4)[:14+9], false},
		// combinations
		{"all three", "53", "10.0.0.0/8", "udp", 1, eth4(dns4), true},
		{"all three: tcp", "53", "10.0.0.0/8", "tcp", 1, eth4(ipv4(v4opts{proto: 6, src: "10.0.0.1", dst: "10.0.0.2"}, ports(5353, 53))), true},
		{"all three: wrong protocol", "53", "10.0.0.0/8", "udp", 1, eth4(ipv4(v4opts{proto: 6, src: "10.0.0.1", dst: "10.0.0.2"}, ports(5353, 53))), false},
		{"all three: wrong net", "53", "192.168.0.0/16", "udp", 1, eth4(dns4), false},
		{"all three: wrong port", "54", "10.0.0.0/8", "udp", 1, eth4(dns4), false},
		{"port and proto disagree", "53", "", "icmp", 1, eth4(dns4), false},
		{"port and v6 net", "443", "2606:2800::/32", "", 1, eth6(web6), true},
		{"port and v6 net, v4 packet", "443", "2606:2800::/32", "", 1, eth4(web4), false},
		// Ethernet tags and non-IP
		{"vlan 802.1Q", "53", "", "", 1, ether(0x0800, []uint16{0x8100}, dns4), true},
		{"vlan 802.1ad", "53", "", "", 1, ether(0x86dd, []uint16{0x88a8}, dns6), true},
		{"vlan QinQ", "", "10.0.0.0/8", "udp", 1, ether(0x0800, []uint16{0x88a8, 0x8100}, dns4), true},
		{"vlan three tags", "53", "", "", 1, ether(0x0800, []uint16{0x88a8, 0x8100, 0x8100}, dns4), false},
		{"vlan 0x9100 not a tag", "53", "", "", 1, ether(0x0800, []uint16{0x9100}, dns4), false},
		{"vlan tag cut short", "53", "", "", 1, ether(0x0800, []uint16{0x8100}, dns4)[:17], false},
		{"arp", "", "0.0.0.0/0", "", 1, ether(0x0806, nil, make([]byte, 28)), false},
		{"ethernet cut before type", "", "", "udp", 1, eth4(dns4)[:13], false},
		// other link types
		{"raw ipv4", "53", "", "", 101, dns4, true},
		{"raw ipv6", "53", "", "", 101, dns6, true},
		{"raw dlt 12", "53", "", "udp", 12, dns4, true},
		{"raw dlt 14", "443", "", "", 14, web6, true},
		{"raw bad version", "", "", "udp", 101, append([]byte{0x50}, dns4[1:]...), false},
		{"raw empty", "", "", "udp", 101, nil, false},
		{"ipv4 link", "", "10.0.0.1", "", 228, dns4, true},
		{"ipv4 link with v6 prefix", "", "::/0", "", 228, dns4, false},
		{"ipv4 link version not checked", "", "", "udp", 228, append([]byte{0x65}, dns4[1:]...), true},
		{"ipv6 link", "", "2001:db8::/32", "tcp", 229, web6, true},
		{"ipv6 link with v4 prefix", "", "10.0.0.0/8", "", 229, web6, false},
		{"sll ipv4", "53", "", "", 113, sll(0x0800, dns4), true},
		{"sll ipv6", "", "2001:db8::/32", "", 113, sll(0x86dd, dns6), true},
		{"sll arp", "", "", "17", 113, sll(0x0806, dns4), false},
		{"sll2 ipv4", "53", "10.0.0.0/8", "", 276, sll2(0x0800, dns4), true},
		{"sll2 ipv6", "", "", "tcp", 276, sll2(0x86dd, web6), true},
		{"sll2 cut inside header, /0 reads nothing", "", "0.0.0.0/0", "", 276, sll2(0x0800, nil)[:10], true},
		{"sll2 cut inside header", "", "", "udp", 276, sll2(0x0800, nil)[:10], false},
		{"null ipv4 little endian", "53", "", "", 0, null(2, binary.LittleEndian, dns4), true},
		{"null ipv4 big endian", "53", "", "", 0, null(2, binary.BigEndian, dns4), true},
		{"null ipv6 netbsd", "53", "", "", 0, null(24, binary.LittleEndian, dns6), true},
		{"null ipv6 freebsd big endian", "", "2001:db8::/32", "", 0, null(28, binary.BigEndian, web6), true},
		{"null ipv6 macos", "", "", "tcp", 0, null(30, binary.LittleEndian, web6), true},
		{"null linux AF_INET6 is not ipv6", "", "", "tcp", 0, null(10, binary.LittleEndian, web6), false},
		{"null short", "", "", "tcp", 0, []byte{2, 0, 0}, false},
		{"loop ipv4", "", "", "udp", 108, null(2, binary.BigEndian, dns4), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.port, tt.ip, tt.proto)
			if got := s.Match(tt.link, tt.frame); got != tt.want {
				t.Errorf("Match(%q): got %v, want %v", s, got, tt.want)
			}
			const snaplen = 96
			got := vmFilter(t, s, tt.link, snaplen)(tt.frame)
			want := 0
			if tt.want {
				want = snaplen
			}
			if got != want {
				t.Errorf("BPF program for %q: got %d, want %d", s, got, want)
			}
		})
	}
}

func TestSpec_Match_UnsupportedLinkType(t *testing.T) {
	frame := ether(0x0800, nil, ipv4(v4opts{proto: 17, src: "10.0.0.1", dst: "10.0.0.2"}, ports(1, 53)))
	for _, lt := range []uint16{9, 105, 127, 147, 65535} {
		if !(Spec{}).Match(lt, frame) {
			t.Errorf("empty spec, link type %d: got false, want true", lt)
		}
		if mustParse(t, "53", "", "").Match(lt, frame) {
			t.Errorf("port 53, link type %d: got true, want false", lt)
		}
	}
}

func TestSpec_Match_Allocs(t *testing.T) {
	s := mustParse(t, "53", "2001:db8::/32", "udp")
	frame := ether(0x86dd, nil, ipv6(17, "2001:db8::1", "2001:db8::2", ports(1, 53)))
	if n := testing.AllocsPerRun(100, func() { s.Match(1, frame) }); n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
}
