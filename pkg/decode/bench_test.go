package decode

import (
	"encoding/binary"
	"testing"
)

// benchFrames are typical frames of each link type and encapsulation, with
// a 1400-byte TCP payload where there is one (the payload is not read).
func benchFrames() []struct {
	name string
	lt   uint16
	data []byte
} {
	seg := ip4{proto: ProtoTCP}.with(tcp(443, 51000, TCPAck|TCPPsh, make([]byte, 1400)))
	seg6 := ip6{next: ProtoTCP}.with(tcp(443, 51000, TCPAck|TCPPsh, make([]byte, 1400)))
	ext := ip6{next: protoHopByHop}.with(cat(ext6(protoDstOpts, []byte{1, 2, 0, 0}), ext6(protoFragment, nil),
		frag6(ProtoUDP, 0, true, 99), udp(5353, 53, make([]byte, 1200))))
	return []struct {
		name string
		lt   uint16
		data []byte
	}{
		{"ethernet-tcp", LinkTypeEthernet, eth(0x0800, seg)},
		{"ethernet-udp", LinkTypeEthernet, eth(0x0800, udp4)},
		{"ethernet-ipv6-tcp", LinkTypeEthernet, eth(0x86dd, seg6)},
		{"vlan-tcp", LinkTypeEthernet, eth(0x8100, cat(tag(42, 0x0800), seg))},
		{"qinq-tcp", LinkTypeEthernet, eth(0x88a8, cat(tag(10, 0x8100), tag(20, 0x0800), seg))},
		{"sll-tcp", LinkTypeLinuxSLL, sll(1, 0x0800, seg)},
		{"sll2-tcp", LinkTypeSLL2, sll2(1, 0x0800, seg)},
		{"raw-tcp", LinkTypeRaw, seg},
		{"null-ipv6-tcp", LinkTypeNull, null(30, binary.LittleEndian, seg6)},
		{"ipv6-ext-udp", LinkTypeEthernet, eth(0x86dd, ext)},
		{"ipv4-later-fragment", LinkTypeEthernet, eth(0x0800, ip4{proto: ProtoUDP, id: 1, frag: 185}.with(make([]byte, 1480)))},
		{"mpls-tcp", LinkTypeEthernet, eth(0x8847, cat(mplsLabel(100, false), mplsLabel(200, true), seg))},
		{"pppoe-tcp", LinkTypeEthernet, eth(0x8864, pppoe(0x0021, seg))},
		{"gre-tcp", LinkTypeEthernet, eth(0x0800, ip4{src: o4a, dst: o4b, proto: 47}.with(gre(0x2000, 0x0800, u32(1), seg)))},
		{"pptp-tcp", LinkTypeEthernet, eth(0x0800, ip4{src: o4a, dst: o4b, proto: 47}.with(gre(0x3001, 0x880b, cat(u16(uint16(4+len(seg))), u16(7), u32(1)), cat([]byte{0xff, 0x03, 0, 0x21}, seg))))},
		{"vxlan-tcp", LinkTypeEthernet, eth(0x0800, ip4{src: o4a, dst: o4b, proto: ProtoUDP}.with(udp(40000, 4789, cat(vxlanHdr(7), eth(0x0800, seg)))))},
		{"arp", LinkTypeEthernet, arp},
	}
}

func BenchmarkDecode(b *testing.B) {
	d := NewDecoder()
	var p Packet
	for _, bf := range benchFrames() {
		b.Run(bf.name, func(b *testing.B) {
			want := OK
			if bf.name == "arp" {
				want = NonIP
			}
			if res := d.Decode(bf.data, bf.lt, uint32(len(bf.data)), &p); res != want {
				b.Fatalf("Decode = %v, want %v", res, want)
			}
			b.ReportAllocs()
			for b.Loop() {
				d.Decode(bf.data, bf.lt, uint32(len(bf.data)), &p)
			}
		})
	}
	// Every frame of the conformance captures in turn: one op is one frame.
	b.Run("conformance-mix", func(b *testing.B) {
		dir, ok := findCorpusDir("conformance")
		if !ok {
			b.Skip("shared capture corpus not found")
		}
		var frames []frame
		for _, path := range captureFiles(b, dir) {
			fs, err := readCapture(path)
			if err != nil {
				b.Fatal(err)
			}
			frames = append(frames, fs...)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			f := &frames[i]
			d.Decode(f.data, f.linkType, f.length, &p)
			if i++; i == len(frames) {
				i = 0
			}
		}
	})
}
