package capfilter

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

// Builders of hand-made frames for the tests. Every header is laid out
// field by field from its RFC, independently of the code under test.

// ports returns an 8-byte transport header starting with the two ports (a
// UDP header; for TCP and SCTP the ports are the same first four bytes).
func ports(sport, dport uint16) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return b
}

// v4opts describes an IPv4 header for ipv4.
type v4opts struct {
	proto    uint8
	src, dst string
	// fragOff is the fragment offset in 8-byte units; mf sets More
	// Fragments.
	fragOff uint16
	mf      bool
	// options adds that many bytes of options (a multiple of 4; IHL grows).
	options int
}

// ipv4 returns an IPv4 header (RFC 791) followed by payload.
func ipv4(o v4opts, payload []byte) []byte {
	hl := 20 + o.options
	b := make([]byte, hl, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(payload)))
	frag := o.fragOff & 0x1fff
	if o.mf {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = o.proto
	src, dst := netip.MustParseAddr(o.src).As4(), netip.MustParseAddr(o.dst).As4()
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	for i := 20; i < hl; i++ {
		b[i] = 1 // NOP options
	}
	return append(b, payload...)
}

// ipv6 returns an IPv6 fixed header (RFC 8200) with next header nh,
// followed by payload.
func ipv6(nh uint8, src, dst string, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = nh
	b[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, payload...)
}

// ext6 returns an 8-byte IPv6 extension header (hop-by-hop, routing,
// destination options or fragment: all start with the next header) before
// payload.
func ext6(nh uint8, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0] = nh
	return append(b, payload...)
}

// ether returns an Ethernet II frame (IEEE 802.3) whose EtherType is
// preceded by the given VLAN tag TPIDs, each with a 2-byte TCI.
func ether(etherType uint16, tpids []uint16, payload []byte) []byte {
	b := []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2}
	for i, tpid := range tpids {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i)) // TCI: VLAN id
	}
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

// sll returns a Linux cooked v1 frame (LINKTYPE_LINUX_SLL): packet type,
// ARPHRD type, address length, 8 address bytes, protocol.
func sll(proto uint16, payload []byte) []byte {
	b := make([]byte, 16, 16+len(payload))
	binary.BigEndian.PutUint16(b[2:], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(b[4:], 6)
	binary.BigEndian.PutUint16(b[14:], proto)
	return append(b, payload...)
}

// sll2 returns a Linux cooked v2 frame (LINKTYPE_LINUX_SLL2): protocol,
// reserved, interface index, ARPHRD type, packet type, address length, 8
// address bytes.
func sll2(proto uint16, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], proto)
	binary.BigEndian.PutUint32(b[4:], 3) // ifindex
	binary.BigEndian.PutUint16(b[8:], 1) // ARPHRD_ETHER
	b[11] = 6
	return append(b, payload...)
}

// null returns a BSD loopback frame: a 4-byte address family in the given
// byte order.
func null(family uint32, order binary.AppendByteOrder, payload []byte) []byte {
	b := order.AppendUint32(nil, family)
	return append(b, payload...)
}

// vmFilter compiles s for linkType and returns a function running the
// program in x/net/bpf's VM on a frame.
func vmFilter(tb testing.TB, s Spec, linkType uint16, snaplen uint32) func([]byte) int {
	tb.Helper()
	raw, err := s.Compile(linkType, snaplen)
	if err != nil {
		tb.Fatalf("Compile(%q, %d): %v", s, linkType, err)
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		tb.Fatalf("Compile(%q, %d): program does not disassemble: %v", s, linkType, raw)
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		tb.Fatalf("Compile(%q, %d): VM refuses the program: %v", s, linkType, err)
	}
	return func(frame []byte) int {
		n, err := vm.Run(frame)
		if err != nil {
			tb.Fatalf("VM run of %q: %v", s, err)
		}
		return n
	}
}

// mustParse parses filter flags that are known to be valid.
func mustParse(tb testing.TB, port, ip, proto string) Spec {
	tb.Helper()
	s, err := Parse(port, ip, proto)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
