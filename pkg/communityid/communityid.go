package communityid

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
)

// IP protocol numbers the Community ID treats specially.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// prefix is the version tag every v1 Community ID starts with.
const prefix = "1:"

// Sum returns the Community ID v1 of a flow tuple with the given seed (0 is
// the default every monitor uses unless configured otherwise): "1:" followed
// by the base64 encoding of the SHA-1 digest, 30 characters in all.
//
// The result does not depend on the direction: swapping (src, sport) with
// (dst, dport) gives the same ID. For ICMP and ICMPv6, sport is the message
// type and dport the code. Ports are ignored for protocols other than TCP,
// UDP, SCTP, ICMP and ICMPv6. Sum returns "" when either address is invalid
// (the zero netip.Addr); the spec allows an empty ID for tuples it does not
// cover. Address zones are ignored; an IPv4-mapped IPv6 address is hashed as
// the 16-byte IPv6 address it is.
func Sum(seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) string {
	var buf [len(prefix) + 28]byte
	return string(AppendSum(buf[:0], seed, proto, src, dst, sport, dport))
}

// AppendSum appends the Community ID that Sum returns to b and returns the
// extended slice. It allocates only when b lacks the capacity for the 30
// bytes it appends. When Sum would return "", b is returned unchanged.
func AppendSum(b []byte, seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) []byte {
	d, ok := digest(seed, proto, src, dst, sport, dport)
	if !ok {
		return b
	}
	b = append(b, prefix...)
	return base64.StdEncoding.AppendEncode(b, d[:])
}

// SumHex is Sum with the digest rendered as 40 lower-case hex digits instead
// of base64 (the reference implementation's --no-base64 form, used for
// troubleshooting).
func SumHex(seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) string {
	var buf [len(prefix) + 2*sha1.Size]byte
	return string(AppendSumHex(buf[:0], seed, proto, src, dst, sport, dport))
}

// AppendSumHex appends the ID that SumHex returns to b and returns the
// extended slice, allocating only when b lacks the capacity.
func AppendSumHex(b []byte, seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) []byte {
	d, ok := digest(seed, proto, src, dst, sport, dport)
	if !ok {
		return b
	}
	b = append(b, prefix...)
	return hex.AppendEncode(b, d[:])
}

// digest computes the SHA-1 over the ordered tuple. ok is false when an
// address is invalid.
func digest(seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) (sum [sha1.Size]byte, ok bool) {
	if !src.IsValid() || !dst.IsValid() {
		return sum, false
	}

	hasPorts, oneWay := false, false
	switch proto {
	case protoTCP, protoUDP, protoSCTP:
		hasPorts = true
	case protoICMP:
		hasPorts = true
		sport, dport, oneWay = icmpPorts(sport, dport, icmpCounterpart)
	case protoICMPv6:
		hasPorts = true
		sport, dport, oneWay = icmpPorts(sport, dport, icmpv6Counterpart)
	}
	if !hasPorts {
		sport, dport = 0, 0
	}

	var sa, da [16]byte
	s, d := addrBytes(&sa, src), addrBytes(&da, dst)

	// Put the smaller (address, port) endpoint first, so both directions
	// hash alike. A one-way ICMP message keeps its direction.
	if !oneWay {
		if c := bytes.Compare(s, d); c > 0 || (c == 0 && sport > dport) {
			s, d = d, s
			sport, dport = dport, sport
		}
	}

	// Largest input: 2 + 16 + 16 + 2 + 4 bytes.
	var in [40]byte
	b := binary.BigEndian.AppendUint16(in[:0], seed)
	b = append(b, s...)
	b = append(b, d...)
	b = append(b, proto, 0) // protocol, then one byte of padding
	if hasPorts {
		b = binary.BigEndian.AppendUint16(b, sport)
		b = binary.BigEndian.AppendUint16(b, dport)
	}
	return sha1.Sum(b), true
}

// addrBytes returns a's bytes in network order (4 for IPv4, 16 for IPv6),
// stored in buf.
func addrBytes(buf *[16]byte, a netip.Addr) []byte {
	if a.Is4() {
		v4 := a.As4()
		copy(buf[:], v4[:])
		return buf[:4]
	}
	*buf = a.As16()
	return buf[:]
}

// icmpPorts maps an ICMP type and code to the pseudo ports the spec hashes,
// as Zeek does (src/analyzer/protocol/icmp/ICMP.cc, mirrored by
// pycommunityid's icmp.py and icmp6.py): a type with a request/reply
// counterpart becomes (type, counterpart) and is two-way; any other becomes
// (type, code) and is one-way.
func icmpPorts(typ, code uint16, counterpart func(uint16) (uint16, bool)) (sport, dport uint16, oneWay bool) {
	if c, ok := counterpart(typ); ok {
		return typ, c, false
	}
	return typ, code, true
}

// icmpCounterpart is the ICMPv4 request/reply table.
func icmpCounterpart(t uint16) (uint16, bool) {
	switch t {
	case 8: // echo request
		return 0, true
	case 0: // echo reply
		return 8, true
	case 13: // timestamp
		return 14, true
	case 14: // timestamp reply
		return 13, true
	case 15: // information request
		return 16, true
	case 16: // information reply
		return 15, true
	case 10: // router solicitation
		return 9, true
	case 9: // router advertisement
		return 10, true
	case 17: // address mask request
		return 18, true
	case 18: // address mask reply
		return 17, true
	}
	return 0, false
}

// icmpv6Counterpart is the ICMPv6 request/reply table.
func icmpv6Counterpart(t uint16) (uint16, bool) {
	switch t {
	case 128: // echo request
		return 129, true
	case 129: // echo reply
		return 128, true
	case 130: // multicast listener query
		return 131, true
	case 131: // multicast listener report
		return 130, true
	case 133: // router solicitation
		return 134, true
	case 134: // router advertisement
		return 133, true
	case 135: // neighbor solicitation
		return 136, true
	case 136: // neighbor advertisement
		return 135, true
	case 139: // node information query ("who are you" request)
		return 140, true
	case 140: // node information reply
		return 139, true
	case 144: // home agent address discovery request
		return 145, true
	case 145: // home agent address discovery reply
		return 144, true
	}
	return 0, false
}
