package decode

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// view is the part of a Packet a table case states.
type view struct {
	Src, Dst         string
	Proto            uint8
	SrcPort, DstPort uint16
	HasPorts         bool
	VLAN             uint16
	HasVLAN          bool
	TCPFlags         uint8
	Payload          uint32
	Frag             Frag
	FragID           uint32
	Tunnels          uint8
}

func viewOf(p *Packet) view {
	return view{
		Src: p.Src.String(), Dst: p.Dst.String(), Proto: p.Proto,
		SrcPort: p.SrcPort, DstPort: p.DstPort, HasPorts: p.HasPorts,
		VLAN: p.VLAN, HasVLAN: p.HasVLAN, TCPFlags: p.TCPFlags, Payload: p.Payload,
		Frag: p.Frag, FragID: p.FragKey.ID, Tunnels: p.Tunnels,
	}
}

const (
	a4, b4 = "192.0.2.1", "198.51.100.2"
	a6, b6 = "2001:db8::1", "2001:db8::2"
	// Outer (tunnel endpoint) addresses.
	o4a, o4b = "203.0.113.1", "203.0.113.2"
	o6a, o6b = "2001:db8:ffff::1", "2001:db8:ffff::2"
)

var (
	// The inner conversations most cases carry.
	tcp4 = ip4{proto: ProtoTCP}.with(tcp(1234, 80, TCPSyn, nil))
	tcp6 = ip6{next: ProtoTCP}.with(tcp(1234, 80, TCPSyn, nil))
	udp4 = ip4{proto: ProtoUDP}.with(udp(5353, 53, []byte("query")))
	arp  = eth(0x0806, make([]byte, 28))

	wantTCP4 = view{Src: a4, Dst: b4, Proto: ProtoTCP, SrcPort: 1234, DstPort: 80, HasPorts: true, TCPFlags: TCPSyn}
	wantTCP6 = view{Src: a6, Dst: b6, Proto: ProtoTCP, SrcPort: 1234, DstPort: 80, HasPorts: true, TCPFlags: TCPSyn}
	wantUDP4 = view{Src: a4, Dst: b4, Proto: ProtoUDP, SrcPort: 5353, DstPort: 53, HasPorts: true, Payload: 5}
)

// with returns v changed by f, for the variations of the views above.
func with(v view, f func(*view)) view {
	f(&v)
	return v
}

func tunnels(n uint8) func(*view) { return func(v *view) { v.Tunnels = n } }
func vlan(id uint16) func(*view)  { return func(v *view) { v.VLAN, v.HasVLAN = id, true } }

// decodeCase is one hand-made frame and what Decode must make of it.
type decodeCase struct {
	name string
	lt   uint16
	data []byte
	res  Result
	want view // checked when res is OK
}

func decodeCases() []decodeCase {
	le, be := binary.LittleEndian, binary.BigEndian
	outer4 := func(proto uint8, payload []byte) []byte {
		return eth(0x0800, ip4{src: o4a, dst: o4b, proto: proto}.with(payload))
	}
	greOuter := view{Src: o4a, Dst: o4b, Proto: 47}
	vxlanOuter := view{Src: o4a, Dst: o4b, Proto: ProtoUDP, SrcPort: 40000, DstPort: 4789, HasPorts: true}
	nested := tcp4
	for range MaxTunnels {
		nested = ip4{src: o4a, dst: o4b, proto: protoIPIP}.with(nested)
	}
	tooDeep := ip4{src: o4a, dst: o4b, proto: protoIPIP}.with(nested)
	nestedTags := tcp4
	et := uint16(0x0800)
	for i := range maxTags {
		nestedTags = cat(tag(uint16(i+1), et), nestedTags)
		et = 0x8100
	}
	labels := func(n int, payload []byte) []byte {
		var b []byte
		for i := range n {
			b = append(b, mplsLabel(uint32(100+i), i == n-1)...)
		}
		return append(b, payload...)
	}

	return []decodeCase{
		// Ethernet and LLC.
		{name: "ethernet/ipv4-tcp", lt: LinkTypeEthernet, data: eth(0x0800, tcp4), want: wantTCP4},
		{name: "ethernet/ipv6-tcp", lt: LinkTypeEthernet, data: eth(0x86dd, tcp6), want: wantTCP6},
		{name: "ethernet/ipv4-udp", lt: LinkTypeEthernet, data: eth(0x0800, udp4), want: wantUDP4},
		{name: "ethernet/padding", lt: LinkTypeEthernet, data: eth(0x0800, cat(ip4{proto: ProtoUDP}.with(udp(1, 2, nil)), make([]byte, 18))),
			want: view{Src: a4, Dst: b4, Proto: ProtoUDP, SrcPort: 1, DstPort: 2, HasPorts: true}},
		{name: "ethernet/arp", lt: LinkTypeEthernet, data: arp, res: NonIP},
		{name: "ethernet/lldp", lt: LinkTypeEthernet, data: eth(0x88cc, make([]byte, 30)), res: NonIP},
		{name: "ethernet/pppoe-discovery", lt: LinkTypeEthernet, data: eth(0x8863, make([]byte, 20)), res: NonIP},
		{name: "ethernet/short", lt: LinkTypeEthernet, data: make([]byte, 13), res: ErrTruncatedLink},
		{name: "802.3/stp", lt: LinkTypeEthernet, data: eth(38, cat([]byte{0x42, 0x42, 0x03}, make([]byte, 35))), res: NonIP},
		{name: "802.3/snap-ipv4", lt: LinkTypeEthernet, data: eth(uint16(8+len(tcp4)), cat([]byte{0xaa, 0xaa, 0x03, 0, 0, 0}, u16(0x0800), tcp4)), want: wantTCP4},
		{name: "802.3/snap-cdp", lt: LinkTypeEthernet, data: eth(40, cat([]byte{0xaa, 0xaa, 0x03, 0, 0, 0x0c}, u16(0x2000), make([]byte, 32))), res: NonIP},
		{name: "802.3/snap-short", lt: LinkTypeEthernet, data: eth(40, []byte{0xaa, 0xaa, 0x03, 0, 0}), res: ErrTruncatedLink},

		// VLAN tags.
		{name: "vlan/802.1q", lt: LinkTypeEthernet, data: eth(0x8100, cat(tag(42, 0x0800), tcp4)), want: with(wantTCP4, vlan(42))},
		{name: "vlan/priority-tag", lt: LinkTypeEthernet, data: eth(0x8100, cat(tag(0, 0x86dd), tcp6)), want: with(wantTCP6, vlan(0))},
		{name: "vlan/802.1ad-qinq", lt: LinkTypeEthernet, data: eth(0x88a8, cat(tag(10, 0x8100), tag(20, 0x0800), tcp4)), want: with(wantTCP4, vlan(10))},
		{name: "vlan/0x9100-triple", lt: LinkTypeEthernet, data: eth(0x9100, cat(tag(7, 0x8100), tag(8, 0x8100), tag(9, 0x0800), tcp4)), want: with(wantTCP4, vlan(7))},
		{name: "vlan/llc-inside", lt: LinkTypeEthernet, data: eth(0x8100, cat(tag(5, 38), []byte{0x42, 0x42, 0x03}, make([]byte, 35))), res: NonIP},
		{name: "vlan/max-tags", lt: LinkTypeEthernet, data: eth(0x8100, nestedTags), want: with(wantTCP4, vlan(maxTags))},
		{name: "vlan/too-many-tags", lt: LinkTypeEthernet, data: eth(0x8100, cat(tag(99, 0x8100), nestedTags)), res: ErrTooManyLayers},
		{name: "vlan/truncated-tag", lt: LinkTypeEthernet, data: eth(0x8100, []byte{0, 42, 8}), res: ErrTruncatedLink},
		{name: "vlan/vn-tag", lt: LinkTypeEthernet, data: eth(0x8926, cat(u32(0x80010002), u16(0x0800), tcp4)), want: wantTCP4},
		{name: "vlan/e-tag", lt: LinkTypeEthernet, data: eth(0x893f, cat(make([]byte, 6), u16(0x8100), tag(6, 0x0800), tcp4)), want: with(wantTCP4, vlan(6))},
		{name: "vlan/fabricpath", lt: LinkTypeEthernet, data: eth(0x8903, cat(u16(1), make([]byte, 12), u16(0x86dd), tcp6)), want: wantTCP6},
		{name: "vlan/pbb", lt: LinkTypeEthernet, data: eth(0x88e7, cat(u32(0x00000100), make([]byte, 12), u16(0x8100), tag(3, 0x0800), tcp4)), want: with(wantTCP4, vlan(3))},

		// Linux cooked captures.
		{name: "sll/ipv4", lt: LinkTypeLinuxSLL, data: sll(1, 0x0800, tcp4), want: wantTCP4},
		{name: "sll/ipv6-loopback", lt: LinkTypeLinuxSLL, data: sll(772, 0x86dd, tcp6), want: wantTCP6},
		{name: "sll/vlan", lt: LinkTypeLinuxSLL, data: sll(1, 0x8100, cat(tag(12, 0x0800), tcp4)), want: with(wantTCP4, vlan(12))},
		{name: "sll/802.2-snap", lt: LinkTypeLinuxSLL, data: sll(1, 4, cat([]byte{0xaa, 0xaa, 0x03, 0, 0, 0}, u16(0x0800), tcp4)), want: wantTCP4},
		{name: "sll/802.3-novell", lt: LinkTypeLinuxSLL, data: sll(1, 1, make([]byte, 30)), res: NonIP},
		{name: "sll/netlink", lt: LinkTypeLinuxSLL, data: sll(824, 0x0800, tcp4), res: NonIP},
		{name: "sll/arp", lt: LinkTypeLinuxSLL, data: sll(1, 0x0806, make([]byte, 28)), res: NonIP},
		{name: "sll/short", lt: LinkTypeLinuxSLL, data: make([]byte, 15), res: ErrTruncatedLink},
		{name: "sll2/ipv4", lt: LinkTypeSLL2, data: sll2(1, 0x0800, tcp4), want: wantTCP4},
		{name: "sll2/ipv6", lt: LinkTypeSLL2, data: sll2(65534, 0x86dd, tcp6), want: wantTCP6},
		{name: "sll2/short", lt: LinkTypeSLL2, data: make([]byte, 19), res: ErrTruncatedLink},

		// Raw IP and loopback.
		{name: "raw/ipv4", lt: LinkTypeRaw, data: tcp4, want: wantTCP4},
		{name: "raw/ipv6", lt: LinkTypeRaw, data: tcp6, want: wantTCP6},
		{name: "raw/dlt12", lt: LinkTypeRaw12, data: tcp4, want: wantTCP4},
		{name: "raw/dlt14", lt: LinkTypeRaw14, data: tcp6, want: wantTCP6},
		{name: "raw/version-5", lt: LinkTypeRaw, data: cat([]byte{0x50}, tcp4[1:]), res: ErrBadIPVersion},
		{name: "raw/empty", lt: LinkTypeRaw, data: nil, res: ErrTruncatedIP},
		{name: "ipv4/linktype-228", lt: LinkTypeIPv4, data: tcp4, want: wantTCP4},
		{name: "ipv4/linktype-228-ipv6", lt: LinkTypeIPv4, data: tcp6, res: ErrBadIPVersion},
		{name: "ipv6/linktype-229", lt: LinkTypeIPv6, data: tcp6, want: wantTCP6},
		{name: "ipv6/linktype-229-ipv4", lt: LinkTypeIPv6, data: tcp4, res: ErrBadIPVersion},
		{name: "null/inet-le", lt: LinkTypeNull, data: null(2, le, tcp4), want: wantTCP4},
		{name: "null/inet-be", lt: LinkTypeNull, data: null(2, be, tcp4), want: wantTCP4},
		{name: "null/inet6-24", lt: LinkTypeNull, data: null(24, le, tcp6), want: wantTCP6},
		{name: "null/inet6-28-be", lt: LinkTypeNull, data: null(28, be, tcp6), want: wantTCP6},
		{name: "null/inet6-30", lt: LinkTypeNull, data: null(30, le, tcp6), want: wantTCP6},
		{name: "null/other-family", lt: LinkTypeNull, data: null(7, le, make([]byte, 20)), res: NonIP},
		{name: "null/short", lt: LinkTypeNull, data: []byte{2, 0, 0}, res: ErrTruncatedLink},
		{name: "null/family-mismatch", lt: LinkTypeNull, data: null(2, le, tcp6), res: ErrBadIPVersion},
		{name: "loop/inet", lt: LinkTypeLoop, data: null(2, be, tcp4), want: wantTCP4},
		{name: "loop/inet6", lt: LinkTypeLoop, data: null(24, be, tcp6), want: wantTCP6},
		{name: "loop/little-endian-is-not-loop", lt: LinkTypeLoop, data: null(2, le, tcp4), res: NonIP},
		{name: "unsupported/ppp", lt: 9, data: cat([]byte{0xff, 0x03, 0, 0x21}, tcp4), res: UnsupportedLink},
		{name: "unsupported/radiotap", lt: 127, data: make([]byte, 40), res: UnsupportedLink},

		// MPLS.
		{name: "mpls/ipv4", lt: LinkTypeEthernet, data: eth(0x8847, labels(1, tcp4)), want: with(wantTCP4, tunnels(1))},
		{name: "mpls/ipv6-3-labels", lt: LinkTypeEthernet, data: eth(0x8847, labels(3, tcp6)), want: with(wantTCP6, tunnels(1))},
		{name: "mpls/multicast-in-vlan", lt: LinkTypeEthernet, data: eth(0x8100, cat(tag(4, 0x8848), labels(2, tcp4))), want: with(wantTCP4, func(v *view) { v.Tunnels, v.VLAN, v.HasVLAN = 1, 4, true })},
		{name: "mpls/pseudowire", lt: LinkTypeEthernet, data: eth(0x8847, labels(2, cat(u32(0), arp))), res: NonIP},
		{name: "mpls/max-labels", lt: LinkTypeEthernet, data: eth(0x8847, labels(maxLabels, tcp4)), want: with(wantTCP4, tunnels(1))},
		{name: "mpls/too-many-labels", lt: LinkTypeEthernet, data: eth(0x8847, labels(maxLabels+1, tcp4)), res: ErrTooManyLayers},
		{name: "mpls/no-bottom", lt: LinkTypeEthernet, data: eth(0x8847, cat(mplsLabel(1, false), mplsLabel(2, false))), res: ErrTruncatedLink},

		// PPPoE.
		{name: "pppoe/ipv4", lt: LinkTypeEthernet, data: eth(0x8864, pppoe(0x0021, tcp4)), want: with(wantTCP4, tunnels(1))},
		{name: "pppoe/ipv6-qinq", lt: LinkTypeEthernet, data: eth(0x88a8, cat(tag(100, 0x8100), tag(200, 0x8864), pppoe(0x0057, tcp6))), want: with(wantTCP6, func(v *view) { v.Tunnels, v.VLAN, v.HasVLAN = 1, 100, true })},
		{name: "pppoe/lcp", lt: LinkTypeEthernet, data: eth(0x8864, pppoe(0xc021, make([]byte, 10))), res: NonIP},
		{name: "pppoe/ipcp", lt: LinkTypeEthernet, data: eth(0x8864, pppoe(0x8021, make([]byte, 10))), res: NonIP},
		{name: "pppoe/ipv6cp", lt: LinkTypeEthernet, data: eth(0x8864, pppoe(0x8057, make([]byte, 10))), res: NonIP},
		{name: "pppoe/bad-version", lt: LinkTypeEthernet, data: eth(0x8864, cat([]byte{0x21}, pppoe(0x0021, tcp4)[1:])), res: ErrBadLink},
		{name: "pppoe/short", lt: LinkTypeEthernet, data: eth(0x8864, []byte{0x11, 0, 0, 1, 0}), res: ErrTruncatedLink},

		// GRE.
		{name: "gre/v0-ipv4", lt: LinkTypeEthernet, data: outer4(47, gre(0, 0x0800, nil, tcp4)), want: with(wantTCP4, tunnels(1))},
		{name: "gre/v0-key", lt: LinkTypeEthernet, data: outer4(47, gre(0x2000, 0x0800, u32(77), tcp4)), want: with(wantTCP4, tunnels(1))},
		{name: "gre/v0-checksum-key-seq-ipv6", lt: LinkTypeEthernet, data: outer4(47, gre(0xb000, 0x86dd, cat(u32(0), u32(77), u32(1)), tcp6)), want: with(wantTCP6, tunnels(1))},
		{name: "gre/v0-teb", lt: LinkTypeEthernet, data: outer4(47, gre(0, 0x6558, nil, eth(0x8100, cat(tag(9, 0x0800), tcp4)))), want: with(wantTCP4, func(v *view) { v.Tunnels, v.VLAN, v.HasVLAN = 1, 9, true })},
		{name: "gre/v0-teb-arp", lt: LinkTypeEthernet, data: outer4(47, gre(0, 0x6558, nil, arp)), want: with(greOuter, func(v *view) { v.Payload = uint32(4 + len(arp)) })},
		{name: "gre/v0-mpls", lt: LinkTypeEthernet, data: outer4(47, gre(0, 0x8847, nil, labels(1, tcp4))), want: with(wantTCP4, tunnels(2))},
		{name: "gre/v0-unknown-protocol", lt: LinkTypeEthernet, data: outer4(47, gre(0, 0x0806, nil, make([]byte, 28))), want: with(greOuter, func(v *view) { v.Payload = 32 })},
		{name: "gre/v0-routing", lt: LinkTypeEthernet, data: outer4(47, gre(0xc000, 0x0800, u32(0), tcp4)), want: with(greOuter, func(v *view) { v.Payload = uint32(8 + len(tcp4)) })},
		{name: "gre/v0-in-ipv6", lt: LinkTypeEthernet, data: eth(0x86dd, ip6{src: o6a, dst: o6b, next: 47}.with(gre(0, 0x0800, nil, tcp4))), want: with(wantTCP4, tunnels(1))},
		{name: "gre/v0-erspan2", lt: LinkTypeEthernet, data: outer4(47, gre(0x1000, 0x88be, u32(5), cat(u32(0x10010000), u32(0), eth(0x0800, tcp4)))), want: with(wantTCP4, tunnels(1))},
		{name: "gre/v0-erspan3", lt: LinkTypeEthernet, data: outer4(47, gre(0x1000, 0x22eb, u32(5), cat(make([]byte, 12), eth(0x0800, tcp4)))), want: with(wantTCP4, tunnels(1))},
		{name: "gre/v0-truncated", lt: LinkTypeEthernet, data: outer4(47, []byte{0x20, 0, 0x08}), res: ErrBadTransport},
		{name: "gre/v0-key-missing", lt: LinkTypeEthernet, data: outer4(47, gre(0x2000, 0x0800, nil, nil)), res: ErrBadTransport},
		{name: "gre/v1-pptp-ipv4", lt: LinkTypeEthernet, data: outer4(47, gre(0x3081, 0x880b, cat(u16(uint16(4+len(tcp4))), u16(7), u32(1), u32(0)), cat([]byte{0xff, 0x03, 0x00, 0x21}, tcp4))), want: with(wantTCP4, tunnels(1))},
		{name: "gre/v1-pptp-compressed", lt: LinkTypeEthernet, data: outer4(47, gre(0x3001, 0x880b, cat(u16(uint16(1+len(tcp4))), u16(7), u32(1)), cat([]byte{0x21}, tcp4))), want: with(wantTCP4, tunnels(1))},
		{name: "gre/v1-pptp-ipv6", lt: LinkTypeEthernet, data: outer4(47, gre(0x3001, 0x880b, cat(u16(uint16(4+len(tcp6))), u16(7), u32(1)), cat([]byte{0xff, 0x03, 0x00, 0x57}, tcp6))), want: with(wantTCP6, tunnels(1))},
		{name: "gre/v1-ack-only", lt: LinkTypeEthernet, data: outer4(47, gre(0x2081, 0x880b, cat(u16(0), u16(7), u32(1)), nil)), want: with(greOuter, func(v *view) { v.Payload = 12 })},
		{name: "gre/v1-lcp", lt: LinkTypeEthernet, data: outer4(47, gre(0x3001, 0x880b, cat(u16(8), u16(7), u32(1)), cat([]byte{0xff, 0x03, 0xc0, 0x21}, make([]byte, 4)))), want: with(greOuter, func(v *view) { v.Payload = 20 })},
		{name: "gre/v1-encrypted", lt: LinkTypeEthernet, data: outer4(47, gre(0x3001, 0x880b, cat(u16(8), u16(7), u32(1)), cat([]byte{0xfd}, make([]byte, 7)))), want: with(greOuter, func(v *view) { v.Payload = 20 })},
		{name: "gre/v1-empty-ppp", lt: LinkTypeEthernet, data: outer4(47, gre(0x3001, 0x880b, cat(u16(0), u16(7), u32(1)), nil)), want: with(greOuter, func(v *view) { v.Payload = 12 })},
		{name: "gre/v2", lt: LinkTypeEthernet, data: outer4(47, gre(0x0002, 0x0800, nil, tcp4)), want: with(greOuter, func(v *view) { v.Payload = uint32(4 + len(tcp4)) })},
		{name: "gre/inner-truncated", lt: LinkTypeEthernet, data: outer4(47, gre(0, 0x0800, nil, tcp4[:30])), res: ErrTruncatedTransport},
		{name: "gre/inner-bad", lt: LinkTypeEthernet, data: outer4(47, gre(0, 0x0800, nil, cat([]byte{0x44}, tcp4[1:]))), res: ErrBadIPHeader},

		// VXLAN and Geneve.
		{name: "vxlan/ipv4-tcp", lt: LinkTypeEthernet, data: outer4(ProtoUDP, udp(40000, 4789, cat(vxlanHdr(100), eth(0x0800, tcp4)))), want: with(wantTCP4, tunnels(1))},
		{name: "vxlan/inner-vlan", lt: LinkTypeEthernet, data: outer4(ProtoUDP, udp(40000, 4789, cat(vxlanHdr(100), eth(0x8100, cat(tag(33, 0x86dd), tcp6))))), want: with(wantTCP6, func(v *view) { v.Tunnels, v.VLAN, v.HasVLAN = 1, 33, true })},
		{name: "vxlan/outer-vlan-wins", lt: LinkTypeEthernet, data: eth(0x8100, cat(tag(5, 0x0800), ip4{src: o4a, dst: o4b, proto: ProtoUDP}.with(udp(40000, 4789, cat(vxlanHdr(100), eth(0x8100, cat(tag(33, 0x0800), tcp4))))))), want: with(wantTCP4, func(v *view) { v.Tunnels, v.VLAN, v.HasVLAN = 1, 5, true })},
		{name: "vxlan/inner-arp", lt: LinkTypeEthernet, data: outer4(ProtoUDP, udp(40000, 4789, cat(vxlanHdr(100), arp))), want: with(vxlanOuter, func(v *view) { v.Payload = uint32(8 + len(arp)) })},
		{name: "vxlan/no-i-flag", lt: LinkTypeEthernet, data: outer4(ProtoUDP, udp(40000, 4789, cat(make([]byte, 8), eth(0x0800, tcp4)))), want: with(vxlanOuter, func(v *view) { v.Payload = uint32(8 + 14 + len(tcp4)) })},
		{name: "vxlan/short", lt: LinkTypeEthernet, data: outer4(ProtoUDP, udp(40000, 4789, []byte{8, 0, 0})), want: with(vxlanOuter, func(v *view) { v.Payload = 3 })},
		{name: "vxlan/inner-truncated", lt: LinkTypeEthernet, data: outer4(ProtoUDP, udp(40000, 4789, cat(vxlanHdr(100), eth(0x0800, tcp4[:10])))), res: ErrTruncatedIP},
		{name: "vxlan/in-vxlan", lt: LinkTypeEthernet, data: outer4(ProtoUDP, udp(40000, 4789, cat(vxlanHdr(100), eth(0x0800, ip4{src: "10.9.9.1", dst: "10.9.9.2", proto: ProtoUDP}.with(udp(40001, 4789, cat(vxlanHdr(200), eth(0x0800, tcp4)))))))), want: with(wantTCP4, tunnels(2))},
		{name: "vxlan/source-port-only", lt: LinkTypeEthernet, data: outer4(ProtoUDP, udp(4789, 40000, cat(vxlanHdr(100), eth(0x0800, tcp4)))), want: view{Src: o4a, Dst: o4b, Proto: ProtoUDP, SrcPort: 4789, DstPort: 40000, HasPorts: true, Payload: uint32(8 + 14 + len(tcp4))}},
		{name: "geneve/ethernet", lt: LinkTypeEthernet, data: outer4(ProtoUDP, udp(40000, 6081, cat([]byte{0x01, 0, 0x65, 0x58}, u32(100<<8), make([]byte, 4), eth(0x0800, tcp4)))), want: with(wantTCP4, tunnels(1))},
		{name: "geneve/ipv6", lt: LinkTypeEthernet, data: outer4(ProtoUDP, udp(40000, 6081, cat([]byte{0, 0, 0x86, 0xdd}, u32(100<<8), tcp6))), want: with(wantTCP6, tunnels(1))},

		// IP in IP.
		{name: "ipip/4in4", lt: LinkTypeEthernet, data: outer4(protoIPIP, tcp4), want: with(wantTCP4, tunnels(1))},
		{name: "ipip/6in4", lt: LinkTypeEthernet, data: outer4(protoIPv6, tcp6), want: with(wantTCP6, tunnels(1))},
		{name: "ipip/4in6", lt: LinkTypeEthernet, data: eth(0x86dd, ip6{src: o6a, dst: o6b, next: protoIPIP}.with(tcp4)), want: with(wantTCP4, tunnels(1))},
		{name: "ipip/6in6", lt: LinkTypeEthernet, data: eth(0x86dd, ip6{src: o6a, dst: o6b, next: protoIPv6}.with(tcp6)), want: with(wantTCP6, tunnels(1))},
		{name: "ipip/6in4-version-4", lt: LinkTypeEthernet, data: outer4(protoIPv6, tcp4), res: ErrBadIPVersion},
		{name: "ipip/max-depth", lt: LinkTypeRaw, data: nested, want: with(wantTCP4, tunnels(MaxTunnels))},
		{name: "ipip/too-deep", lt: LinkTypeRaw, data: tooDeep, res: ErrTooManyLayers},

		// IPv4.
		{name: "ipv4/options", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP, opts: []byte{0x94, 4, 0, 0, 1, 1, 1, 0}}.with(tcp(1234, 80, TCPSyn, nil)), want: wantTCP4},
		{name: "ipv4/ihl-4", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP, ihl: 4}.with(tcp(1234, 80, TCPSyn, nil)), res: ErrBadIPHeader},
		{name: "ipv4/ihl-beyond-capture", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP, ihl: 15, total: 100}.with(make([]byte, 10)), res: ErrTruncatedIP},
		{name: "ipv4/ihl-beyond-total", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP, ihl: 15}.with(make([]byte, 10)), res: ErrBadIPHeader},
		{name: "ipv4/total-below-ihl", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP, total: 19}.with(tcp(1234, 80, TCPSyn, nil)), res: ErrBadIPHeader},
		{name: "ipv4/total-0-tso", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP, total: -1}.with(tcp(1234, 80, TCPAck, make([]byte, 1000))),
			want: with(wantTCP4, func(v *view) { v.TCPFlags, v.Payload = TCPAck, 1000 })},
		{name: "ipv4/short", lt: LinkTypeRaw, data: tcp4[:19], res: ErrTruncatedIP},
		{name: "ipv4/payload", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP}.with(tcp(1234, 80, TCPPsh|TCPAck, make([]byte, 100))),
			want: with(wantTCP4, func(v *view) { v.TCPFlags, v.Payload = TCPPsh|TCPAck, 100 })},
		{name: "ipv4/ah", lt: LinkTypeRaw, data: ip4{proto: protoAH}.with(cat(ah(ProtoTCP, 24), tcp(1234, 80, TCPSyn, nil))), want: wantTCP4},
		{name: "ipv4/ah-beyond-payload", lt: LinkTypeRaw, data: ip4{proto: protoAH}.with(cat([]byte{6, 20}, make([]byte, 10))), res: ErrBadTransport},
		{name: "ipv4/esp", lt: LinkTypeRaw, data: ip4{proto: 50}.with(make([]byte, 40)), want: view{Src: a4, Dst: b4, Proto: 50, Payload: 40}},
		{name: "ipv4/pim", lt: LinkTypeRaw, data: ip4{proto: 103}.with(make([]byte, 12)), want: view{Src: a4, Dst: b4, Proto: 103, Payload: 12}},
		{name: "ipv4/no-payload", lt: LinkTypeRaw, data: ip4{proto: 253}.with(nil), want: view{Src: a4, Dst: b4, Proto: 253}},

		// IPv4 fragments.
		{name: "frag4/first", lt: LinkTypeRaw, data: ip4{proto: ProtoUDP, id: 0x4242, frag: 0x2000}.with(cat(u16(5353), u16(53), u16(3000), u16(0), make([]byte, 1472))),
			want: with(wantUDP4, func(v *view) { v.Payload, v.Frag, v.FragID = 2992, FirstFragment, 0x4242 })},
		{name: "frag4/middle", lt: LinkTypeRaw, data: ip4{proto: ProtoUDP, id: 0x4242, frag: 0x2000 | 185}.with(make([]byte, 1480)),
			want: view{Src: a4, Dst: b4, Proto: ProtoUDP, Payload: 1480, Frag: LaterFragment, FragID: 0x4242}},
		{name: "frag4/last", lt: LinkTypeRaw, data: ip4{proto: ProtoUDP, id: 0x4242, frag: 370}.with(make([]byte, 40)),
			want: view{Src: a4, Dst: b4, Proto: ProtoUDP, Payload: 40, Frag: LaterFragment, FragID: 0x4242}},
		{name: "frag4/df-is-whole", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP, frag: 0x4000}.with(tcp(1234, 80, TCPSyn, nil)), want: wantTCP4},
		{name: "frag4/tiny-first", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP, id: 9, frag: 0x2000}.with(tcp(1234, 80, TCPSyn, nil)[:8]), res: ErrTruncatedTransport},
		{name: "frag4/later-of-gre", lt: LinkTypeEthernet, data: eth(0x0800, ip4{src: o4a, dst: o4b, proto: 47, id: 7, frag: 100}.with(make([]byte, 64))),
			want: view{Src: o4a, Dst: o4b, Proto: 47, Payload: 64, Frag: LaterFragment, FragID: 7}},
		{name: "frag4/first-of-ipip", lt: LinkTypeEthernet, data: eth(0x0800, ip4{src: o4a, dst: o4b, proto: protoIPIP, id: 7, frag: 0x2000}.with(ip4{proto: ProtoUDP, total: 3000}.with(udp(5353, 53, make([]byte, 100))[:40]))),
			want: view{Src: a4, Dst: b4, Proto: ProtoUDP, SrcPort: 5353, DstPort: 53, HasPorts: true, Payload: 100, Frag: FirstFragment, FragID: 7, Tunnels: 1}},

		// IPv6 extension headers and fragments.
		{name: "ipv6/hbh-dstopts-tcp", lt: LinkTypeRaw, data: ip6{next: protoHopByHop}.with(cat(ext6(protoDstOpts, []byte{1, 2, 0, 0}), ext6(ProtoTCP, nil), tcp(1234, 80, TCPSyn, make([]byte, 10)))),
			want: with(wantTCP6, func(v *view) { v.Payload = 10 })},
		{name: "ipv6/routing0-final-destination", lt: LinkTypeRaw, data: ip6{next: protoRouting}.with(cat(rh(ProtoUDP, 0, 2, "2001:db8::7", "2001:db8::9"), udp(5353, 53, nil))),
			want: view{Src: a6, Dst: "2001:db8::9", Proto: ProtoUDP, SrcPort: 5353, DstPort: 53, HasPorts: true}},
		{name: "ipv6/routing0-no-segments-left", lt: LinkTypeRaw, data: ip6{next: protoRouting}.with(cat(rh(ProtoUDP, 0, 0, "2001:db8::7"), udp(5353, 53, nil))),
			want: view{Src: a6, Dst: b6, Proto: ProtoUDP, SrcPort: 5353, DstPort: 53, HasPorts: true}},
		{name: "ipv6/routing2-home-address", lt: LinkTypeRaw, data: ip6{next: protoRouting}.with(cat(rh(ProtoTCP, 2, 1, "2001:db8::aa"), tcp(1234, 80, TCPSyn, nil))),
			want: with(wantTCP6, func(v *view) { v.Dst = "2001:db8::aa" })},
		{name: "ipv6/srh-segment-0", lt: LinkTypeRaw, data: ip6{next: protoRouting}.with(cat(rh(ProtoTCP, 4, 1, "2001:db8::bb", "2001:db8::2"), tcp(1234, 80, TCPSyn, nil))),
			want: with(wantTCP6, func(v *view) { v.Dst = "2001:db8::bb" })},
		{name: "ipv6/home-address-option", lt: LinkTypeRaw, data: ip6{next: protoDstOpts}.with(cat(ext6(ProtoTCP, cat([]byte{1, 2, 0, 0, 0xc9, 16}, addr("2001:db8::cc"))), tcp(1234, 80, TCPSyn, nil))),
			want: with(wantTCP6, func(v *view) { v.Src = "2001:db8::cc" })},
		{name: "ipv6/ah", lt: LinkTypeRaw, data: ip6{next: protoAH}.with(cat(ah(ProtoTCP, 24), tcp(1234, 80, TCPSyn, nil))), want: wantTCP6},
		{name: "ipv6/ah-zero-length", lt: LinkTypeRaw, data: ip6{next: protoAH}.with(cat([]byte{ProtoTCP, 0}, make([]byte, 6), tcp(1234, 80, TCPSyn, nil))), want: wantTCP6},
		{name: "ipv6/esp", lt: LinkTypeRaw, data: ip6{next: protoHopByHop}.with(cat(ext6(50, nil), make([]byte, 40))), want: view{Src: a6, Dst: b6, Proto: 50, Payload: 40}},
		{name: "ipv6/no-next-header", lt: LinkTypeRaw, data: ip6{next: protoNoNext}.with(nil), want: view{Src: a6, Dst: b6, Proto: 59}},
		{name: "ipv6/mobility", lt: LinkTypeRaw, data: ip6{next: protoMobility}.with(ext6(protoNoNext, []byte{5, 0, 0, 0, 0, 0})), want: view{Src: a6, Dst: b6, Proto: 59}},
		{name: "ipv6/ext-truncated", lt: LinkTypeRaw, data: ip6{next: protoHopByHop, plen: 100}.with(ext6(ProtoTCP, make([]byte, 30))[:20]), res: ErrTruncatedIP},
		{name: "ipv6/ext-beyond-payload", lt: LinkTypeRaw, data: ip6{next: protoHopByHop}.with([]byte{ProtoTCP, 4, 0, 0, 0, 0, 0, 0}), res: ErrBadIPHeader},
		{name: "ipv6/short", lt: LinkTypeRaw, data: tcp6[:39], res: ErrTruncatedIP},
		{name: "ipv6/jumbogram", lt: LinkTypeRaw, data: ip6{next: protoHopByHop, plen: -1}.with(cat([]byte{ProtoUDP, 0, 0xc2, 4}, u32(8+8+70000), udp(5353, 53, nil)[:4], u16(0), u16(0), make([]byte, 70000))),
			want: view{Src: a6, Dst: b6, Proto: ProtoUDP, SrcPort: 5353, DstPort: 53, HasPorts: true, Payload: 70000}},
		{name: "ipv6/payload-length-0-tso", lt: LinkTypeRaw, data: ip6{next: ProtoTCP, plen: -1}.with(tcp(1234, 80, TCPSyn, make([]byte, 300))),
			want: with(wantTCP6, func(v *view) { v.Payload = 300 })},
		{name: "frag6/first", lt: LinkTypeRaw, data: ip6{next: protoFragment}.with(cat(frag6(ProtoUDP, 0, true, 0xabcdef01), cat(u16(5353), u16(53), u16(3000), u16(0), make([]byte, 1000)))),
			want: view{Src: a6, Dst: b6, Proto: ProtoUDP, SrcPort: 5353, DstPort: 53, HasPorts: true, Payload: 2992, Frag: FirstFragment, FragID: 0xabcdef01}},
		{name: "frag6/later", lt: LinkTypeRaw, data: ip6{next: protoFragment}.with(cat(frag6(ProtoUDP, 126, false, 0xabcdef01), make([]byte, 992))),
			want: view{Src: a6, Dst: b6, Proto: ProtoUDP, Payload: 992, Frag: LaterFragment, FragID: 0xabcdef01}},
		{name: "frag6/atomic", lt: LinkTypeRaw, data: ip6{next: protoFragment}.with(cat(frag6(ProtoTCP, 0, false, 5), tcp(1234, 80, TCPSyn, nil))), want: wantTCP6},
		{name: "frag6/later-after-routing", lt: LinkTypeRaw, data: ip6{next: protoRouting}.with(cat(rh(protoFragment, 0, 1, "2001:db8::9"), frag6(ProtoTCP, 10, true, 5), make([]byte, 16))),
			want: view{Src: a6, Dst: "2001:db8::9", Proto: ProtoTCP, Payload: 16, Frag: LaterFragment, FragID: 5}},
		{name: "frag6/later-of-tunnel", lt: LinkTypeRaw, data: ip6{src: o6a, dst: o6b, next: protoFragment}.with(cat(frag6(protoIPIP, 10, true, 5), make([]byte, 16))),
			want: view{Src: o6a, Dst: o6b, Proto: protoIPIP, Payload: 16, Frag: LaterFragment, FragID: 5}},
		{name: "frag6/truncated", lt: LinkTypeRaw, data: ip6{next: protoFragment, plen: 100}.with(frag6(ProtoTCP, 10, true, 5)[:6]), res: ErrTruncatedIP},

		// Transport.
		{name: "tcp/data-offset-4", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP}.with(cat(tcp(1234, 80, TCPSyn, nil)[:12], []byte{4 << 4, 2}, make([]byte, 6))), res: ErrBadTransport},
		{name: "tcp/data-offset-beyond-segment", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP}.with(cat(tcp(1234, 80, TCPSyn, nil)[:12], []byte{15 << 4, 2}, make([]byte, 6))), res: ErrBadTransport},
		{name: "tcp/snaplen-in-options", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP, total: 20 + 32 + 5}.with(cat(tcp(1234, 80, TCPAck, nil)[:12], []byte{8 << 4, TCPAck}, make([]byte, 6), make([]byte, 4))),
			want: with(wantTCP4, func(v *view) { v.TCPFlags, v.Payload = TCPAck, 5 })},
		{name: "tcp/snaplen-in-header", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP, total: 60}.with(tcp(1234, 80, TCPSyn, nil)[:19]), res: ErrTruncatedTransport},
		{name: "tcp/segment-shorter-than-header", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP}.with(tcp(1234, 80, TCPSyn, nil)[:19]), res: ErrBadTransport},
		{name: "tcp/all-flags", lt: LinkTypeRaw, data: ip4{proto: ProtoTCP}.with(tcp(1234, 80, 0xff, nil)), want: with(wantTCP4, func(v *view) { v.TCPFlags = 0xff })},
		{name: "udp/length-7", lt: LinkTypeRaw, data: ip4{proto: ProtoUDP}.with(cat(u16(1), u16(2), u16(7), u16(0), make([]byte, 10))), res: ErrBadTransport},
		{name: "udp/length-0-ipv4", lt: LinkTypeRaw, data: ip4{proto: ProtoUDP}.with(cat(u16(1), u16(2), u16(0), u16(0), make([]byte, 10))), res: ErrBadTransport},
		{name: "udp/length-0-ipv6", lt: LinkTypeRaw, data: ip6{next: ProtoUDP}.with(cat(u16(1), u16(2), u16(0), u16(0), make([]byte, 10))),
			want: view{Src: a6, Dst: b6, Proto: ProtoUDP, SrcPort: 1, DstPort: 2, HasPorts: true, Payload: 10}},
		{name: "udp/length-beyond-ip", lt: LinkTypeRaw, data: ip4{proto: ProtoUDP}.with(cat(u16(1), u16(2), u16(500), u16(0), make([]byte, 10))),
			want: view{Src: a4, Dst: b4, Proto: ProtoUDP, SrcPort: 1, DstPort: 2, HasPorts: true, Payload: 10}},
		{name: "udp/snaplen", lt: LinkTypeRaw, data: ip4{proto: ProtoUDP, total: 100}.with(u16(53)), res: ErrTruncatedTransport},
		{name: "udp/teredo-stays-udp", lt: LinkTypeRaw, data: ip4{proto: ProtoUDP}.with(udp(40000, 3544, tcp6)),
			want: view{Src: a4, Dst: b4, Proto: ProtoUDP, SrcPort: 40000, DstPort: 3544, HasPorts: true, Payload: uint32(len(tcp6))}},
		{name: "udp/gtp-stays-udp", lt: LinkTypeRaw, data: ip4{proto: ProtoUDP}.with(udp(2152, 2152, cat([]byte{0x30, 0xff}, u16(uint16(len(tcp4))), u32(1), tcp4))),
			want: view{Src: a4, Dst: b4, Proto: ProtoUDP, SrcPort: 2152, DstPort: 2152, HasPorts: true, Payload: uint32(8 + len(tcp4))}},
		{name: "sctp/ipv4", lt: LinkTypeRaw, data: ip4{proto: ProtoSCTP}.with(sctp(3868, 3869)), want: view{Src: a4, Dst: b4, Proto: ProtoSCTP, SrcPort: 3868, DstPort: 3869, HasPorts: true, Payload: 4}},
		{name: "sctp/truncated", lt: LinkTypeRaw, data: ip4{proto: ProtoSCTP, total: 36}.with(sctp(3868, 3869)[:10]), res: ErrTruncatedTransport},
		{name: "icmp/echo", lt: LinkTypeRaw, data: ip4{proto: ProtoICMP}.with(icmp(8, 0, make([]byte, 56))), want: view{Src: a4, Dst: b4, Proto: ProtoICMP, SrcPort: 8, HasPorts: true, Payload: 56}},
		{name: "icmp/error-quoting-udp", lt: LinkTypeRaw, data: ip4{proto: ProtoICMP}.with(icmp(3, 3, ip4{src: b4, dst: a4, proto: ProtoUDP}.with(udp(53, 5353, nil)))),
			want: view{Src: a4, Dst: b4, Proto: ProtoICMP, SrcPort: 3, DstPort: 3, HasPorts: true, Payload: 28}},
		{name: "icmp/truncated", lt: LinkTypeRaw, data: ip4{proto: ProtoICMP, total: 28}.with([]byte{8, 0, 0}), res: ErrTruncatedTransport},
		{name: "icmpv6/echo", lt: LinkTypeRaw, data: ip6{next: ProtoICMPv6}.with(icmp(128, 0, make([]byte, 8))), want: view{Src: a6, Dst: b6, Proto: ProtoICMPv6, SrcPort: 128, HasPorts: true, Payload: 8}},
		{name: "icmpv6/error-quoting-ipv6", lt: LinkTypeRaw, data: ip6{next: ProtoICMPv6}.with(icmp(1, 4, ip6{src: b6, dst: a6, next: ProtoUDP}.with(udp(53, 5353, nil)))),
			want: view{Src: a6, Dst: b6, Proto: ProtoICMPv6, SrcPort: 1, DstPort: 4, HasPorts: true, Payload: 48}},
	}
}

func TestDecoder_Decode(t *testing.T) {
	d := NewDecoder()
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			length := uint32(len(tc.data))
			res := d.Decode(tc.data, tc.lt, length, &p)
			if res != tc.res {
				t.Fatalf("Decode = %v, want %v (packet %+v)", res, tc.res, viewOf(&p))
			}
			checkPacket(t, tc.name, tc.data, length, &p, res)
			if res != OK {
				return
			}
			if diff := cmp.Diff(tc.want, viewOf(&p)); diff != "" {
				t.Errorf("Decode mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecoder_Decode_results checks that the table produces every Result,
// so that every error path is exercised by a hand-made frame.
func TestDecoder_Decode_results(t *testing.T) {
	seen := make(map[Result]bool)
	for _, tc := range decodeCases() {
		seen[tc.res] = true
	}
	for r := range numResults {
		if !seen[r] {
			t.Errorf("no table case produces %v", r)
		}
	}
}

// TestDecoder_Decode_truncated cuts every table frame at every byte offset
// (as a snapshot length would): Decode must not panic, and must return an
// error or a consistent packet.
func TestDecoder_Decode_truncated(t *testing.T) {
	d := NewDecoder()
	for _, tc := range decodeCases() {
		length := uint32(len(tc.data))
		for n := range len(tc.data) {
			what := fmt.Sprintf("%s cut at %d", tc.name, n)
			var p Packet
			res := decodeNoPanic(t, d, what, tc.data[:n:n], tc.lt, length, &p)
			checkPacket(t, what, tc.data[:n], length, &p, res)
			if res == OK && tc.res == OK && p.Src != (netip.Addr{}) {
				// A cut frame decodes to the same conversation or to
				// the tunnel's outer one (a tunnel header cut short).
				want := tc.want
				if got := p.Src.String(); got != want.Src && got != o4a && got != o6a && got != "10.9.9.1" {
					t.Errorf("%s: Src = %s, want %s", what, got, want.Src)
				}
			}
		}
	}
}

// TestDecoder_Decode_snaplen decodes frames whose wire length exceeds the
// captured bytes: lengths are taken from the headers, not from the capture.
func TestDecoder_Decode_snaplen(t *testing.T) {
	d := NewDecoder()
	full := eth(0x0800, ip4{proto: ProtoTCP}.with(tcp(1234, 80, TCPAck, make([]byte, 1400))))
	var p Packet
	if res := d.Decode(full[:96], LinkTypeEthernet, uint32(len(full)), &p); res != OK {
		t.Fatalf("Decode = %v, want ok", res)
	}
	if p.Payload != 1400 || p.Length != uint32(len(full)) || p.CapLen != 96 {
		t.Errorf("Payload, Length, CapLen = %d, %d, %d, want 1400, %d, 96", p.Payload, p.Length, p.CapLen, len(full))
	}
	// A TSO super-packet with total length 0, cut by the snapshot length:
	// the payload is what the wire length leaves after the headers.
	tso := eth(0x0800, ip4{proto: ProtoTCP, total: -1}.with(tcp(1234, 80, TCPAck, make([]byte, 30000))))
	if res := d.Decode(tso[:200], LinkTypeEthernet, uint32(len(tso)), &p); res != OK {
		t.Fatalf("Decode(TSO) = %v, want ok", res)
	}
	if p.Payload != 30000 {
		t.Errorf("Payload(TSO) = %d, want 30000", p.Payload)
	}
	// A jumbo payload option longer than the frame is taken as far as the
	// frame goes.
	jumbo := ip6{next: protoHopByHop, plen: -1}.with(cat([]byte{ProtoTCP, 0, 0xc2, 4}, u32(0xfffffff0), tcp(1234, 80, TCPAck, make([]byte, 100))))
	if res := d.Decode(jumbo[:80], LinkTypeRaw, uint32(len(jumbo)), &p); res != OK {
		t.Fatalf("Decode(jumbo) = %v, want ok", res)
	}
	if p.Payload != 100 {
		t.Errorf("Payload(jumbo) = %d, want 100", p.Payload)
	}
}

// TestDecoder_Decode_fullPacket checks every field of a TCP packet, the
// fragment key and that Decode overwrites a used Packet completely.
func TestDecoder_Decode_fullPacket(t *testing.T) {
	d := NewDecoder()
	p := Packet{VLAN: 9, HasVLAN: true, Tunnels: 3, Frag: LaterFragment, FragKey: FragKey{ID: 1}, SrcPort: 5}
	data := eth(0x0800, ip4{proto: ProtoTCP, id: 0x1111, frag: 0x2000}.with(tcp(1234, 80, TCPSyn|TCPEce|TCPCwr, make([]byte, 7))))
	if res := d.Decode(data, LinkTypeEthernet, 1000, &p); res != OK {
		t.Fatalf("Decode = %v, want ok", res)
	}
	want := Packet{
		Length: 1000, CapLen: uint32(len(data)),
		Src: netip.MustParseAddr(a4), Dst: netip.MustParseAddr(b4), Proto: ProtoTCP,
		SrcPort: 1234, DstPort: 80, HasPorts: true,
		TCPFlags: TCPSyn | TCPEce | TCPCwr, Seq: 0x01020304, Ack: 0x05060708, Window: 0xfaf0,
		Payload: 7, Frag: FirstFragment,
		FragKey: FragKey{Src: netip.MustParseAddr(a4), Dst: netip.MustParseAddr(b4), ID: 0x1111, Proto: ProtoTCP},
	}
	if diff := cmp.Diff(want, p, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Decode mismatch (-want +got):\n%s", diff)
	}
	// Decode keeps no reference to the frame: scribbling over it changes
	// nothing.
	before := p
	for i := range data {
		data[i] = 0xff
	}
	if p != before {
		t.Errorf("Packet changed with the frame's bytes")
	}
	// An error overwrites the packet too.
	if res := d.Decode(nil, LinkTypeEthernet, 0, &p); res != ErrTruncatedLink {
		t.Fatalf("Decode(nil) = %v, want %v", res, ErrTruncatedLink)
	}
	if p != (Packet{}) {
		t.Errorf("Decode(nil) left %+v", p)
	}
}

// TestDecoder_settings checks the tunnel port settings.
func TestDecoder_settings(t *testing.T) {
	frame := func(port uint16) []byte {
		return eth(0x0800, ip4{src: o4a, dst: o4b, proto: ProtoUDP}.with(udp(40000, port, cat(vxlanHdr(1), eth(0x0800, tcp4)))))
	}
	tests := []struct {
		name  string
		d     *Decoder
		port  uint16
		inner bool
	}{
		{"default-4789", NewDecoder(), 4789, true},
		{"default-8472", NewDecoder(), 8472, false},
		{"flannel-8472", &Decoder{VXLANPort: 8472}, 8472, true},
		{"off", &Decoder{}, 4789, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			data := frame(tc.port)
			if res := tc.d.Decode(data, LinkTypeEthernet, uint32(len(data)), &p); res != OK {
				t.Fatalf("Decode = %v, want ok", res)
			}
			if got := p.Tunnels == 1; got != tc.inner {
				t.Errorf("decapsulated = %v, want %v (packet %+v)", got, tc.inner, viewOf(&p))
			}
		})
	}
}

func TestResult_String(t *testing.T) {
	seen := make(map[string]bool)
	for r := range numResults {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("Result(%d).String() = %q", r, s)
		}
		seen[s] = true
	}
	if got := numResults.String(); got != "unknown" {
		t.Errorf("numResults.String() = %q, want unknown", got)
	}
}

// decodeNoPanic decodes and turns a panic into a test failure naming what.
func decodeNoPanic(tb testing.TB, d *Decoder, what string, data []byte, lt uint16, length uint32, p *Packet) (res Result) {
	tb.Helper()
	defer func() {
		if r := recover(); r != nil {
			tb.Errorf("%s: panic: %v", what, r)
			res = numResults
		}
	}()
	return d.Decode(data, lt, length, p)
}
