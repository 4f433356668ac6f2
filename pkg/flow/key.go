package flow

import (
	"encoding/binary"
	"net/netip"

	"github.com/lightshark-dev/lightshark-mini/pkg/decode"
)

// key is the canonical, direction-free identity of a flow: the endpoint
// with the lower (address, port) is always A. Addresses are held as two
// big-endian 64-bit halves of their 16-byte form (IPv4-mapped for IPv4,
// with v6 false), so comparing and hashing are integer operations. It is a
// comparable value of 40 bytes.
type key struct {
	a, b         [2]uint64
	portA, portB uint16
	proto        uint8
	v6           bool
}

func (k *key) eq(o *key) bool {
	return k.a == o.a && k.b == o.b && k.portA == o.portA && k.portB == o.portB &&
		k.proto == o.proto && k.v6 == o.v6
}

// halves returns a's 16-byte form (IPv4-mapped for IPv4) as two big-endian
// halves. Scalars rather than a [2]uint64, and As4 for IPv4: the compiler
// then keeps them in registers instead of moving them through the stack in
// 16-byte loads that stall on the 8-byte stores before them.
func halves(a netip.Addr) (hi, lo uint64) {
	if a.Is4() {
		b := a.As4()
		return 0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(b[:]))
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// makeKey sets k to the canonical key of p's conversation, given the
// ports to use (see flowPorts), and reports whether p travels from A to B.
// It writes through k rather than returning a key: the 40 bytes then go
// once to their destination, not through a temporary.
func makeKey(k *key, p *decode.Packet, sport, dport uint16) (aToB bool) {
	sh, sl := halves(p.Src)
	dh, dl := halves(p.Dst)
	k.proto = p.Proto
	k.v6 = p.Src.Is6()
	// A is the lower (address, port) endpoint.
	if dh < sh || dh == sh && (dl < sl || dl == sl && dport < sport) {
		k.a, k.portA, k.b, k.portB = [2]uint64{dh, dl}, dport, [2]uint64{sh, sl}, sport
		return false
	}
	k.a, k.portA, k.b, k.portB = [2]uint64{sh, sl}, sport, [2]uint64{dh, dl}, dport
	return true
}

func (k *key) addrA() netip.Addr { return addrFrom(k.a, k.v6) }
func (k *key) addrB() netip.Addr { return addrFrom(k.b, k.v6) }

func addrFrom(h [2]uint64, v6 bool) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], h[0])
	binary.BigEndian.PutUint64(b[8:], h[1])
	a := netip.AddrFrom16(b)
	if !v6 {
		return a.Unmap()
	}
	return a
}

// hash mixes the key into 64 bits (a multiply-xorshift fold; the table is
// keyed by packet contents, so the seed is random per table).
func (k *key) hash(seed uint64) uint64 {
	const m = 0x9e3779b97f4a7c15
	h := seed
	h = (h ^ k.a[0]) * m
	h ^= h >> 29
	h = (h ^ k.a[1]) * m
	h ^= h >> 29
	h = (h ^ k.b[0]) * m
	h ^= h >> 29
	h = (h ^ k.b[1]) * m
	h ^= h >> 29
	v := uint64(k.portA) | uint64(k.portB)<<16 | uint64(k.proto)<<32
	if k.v6 {
		v |= 1 << 63
	}
	h = (h ^ v) * m
	h ^= h >> 32
	return h
}

// ICMP message types that come in request/response pairs. The flow of an
// echo request and its reply is one flow, as in Zeek and the Community ID
// specification: the key's "ports" are the type and its counterpart.
// Indexed by type; -1 for one-way messages. Arrays, not maps: this is read
// for every ICMP packet.
var icmp4Pairs, icmp6Pairs = pairTable(map[uint8]uint8{
	8: 0, 0: 8, // echo
	13: 14, 14: 13, // timestamp
	15: 16, 16: 15, // information
	10: 9, 9: 10, // router solicitation / advertisement
	17: 18, 18: 17, // address mask
}), pairTable(map[uint8]uint8{
	128: 129, 129: 128, // echo
	133: 134, 134: 133, // router solicitation / advertisement
	135: 136, 136: 135, // neighbor solicitation / advertisement
	130: 131, 131: 130, // multicast listener query / report
	144: 145, 145: 144, // home agent address discovery
	139: 140, 140: 139, // node information query / response
})

func pairTable(m map[uint8]uint8) *[256]int16 {
	var t [256]int16
	for i := range t {
		t[i] = -1
	}
	for k, v := range m {
		t[k] = int16(v)
	}
	return &t
}

// flowPorts returns the ports that key p's flow. TCP, UDP and SCTP use
// their ports. ICMP uses the type and, for paired types, the counterpart
// type (so a request and its reply share a key); one-way messages use the
// type and code.
func flowPorts(p *decode.Packet) (sport, dport uint16) {
	switch p.Proto {
	case decode.ProtoICMP, decode.ProtoICMPv6:
		if !p.HasPorts {
			return 0, 0
		}
		typ := uint8(p.SrcPort)
		pairs := icmp4Pairs
		if p.Proto == decode.ProtoICMPv6 {
			pairs = icmp6Pairs
		}
		if c := pairs[typ]; c >= 0 {
			return uint16(typ), uint16(c)
		}
		return p.SrcPort, p.DstPort
	}
	return p.SrcPort, p.DstPort
}
