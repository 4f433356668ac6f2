package capfilter

import (
	"encoding/binary"
	"net/netip"
)

// Match reports whether a frame of the given link type passes s: the
// user-space twin of Compile, with the same semantics (see the package
// documentation), used to filter files and where no kernel filter can be
// attached. frame is the captured bytes, starting at the link-layer header;
// Match only reads it. A test needing bytes beyond the end of frame is
// false, as a load beyond the packet ends a BPF program with "reject".
//
// For a link type Compile does not support, Match is true only for an
// empty Spec. Match does not allocate.
func (s Spec) Match(linkType uint16, frame []byte) bool {
	if s.IsEmpty() {
		return true
	}
	off, version := networkHeader(linkType, frame)
	var ip []byte
	if off <= len(frame) { // SLL2's header may be cut short after the protocol
		ip = frame[off:]
	}
	switch version {
	case 4:
		return s.matchIPv4(ip)
	case 6:
		return s.matchIPv6(ip)
	}
	return false
}

// networkHeader finds the IP header of frame: its offset and IP version
// (4 or 6), or version 0 when the frame does not carry IP or the link
// type is unsupported.
func networkHeader(linkType uint16, frame []byte) (off, version int) {
	switch linkType {
	case linkEthernet:
		off = 12
		for range 3 {
			t, ok := be16(frame, off)
			if !ok {
				return 0, 0
			}
			switch t {
			case etherIPv4:
				return off + 2, 4
			case etherIPv6:
				return off + 2, 6
			case etherVLAN, etherQinQ:
				off += 4 // a tag: TCI, then the next EtherType
			default:
				return 0, 0
			}
		}
		return 0, 0 // more than two tags
	case linkRaw, linkRaw12, linkRaw14:
		if len(frame) == 0 {
			return 0, 0
		}
		switch frame[0] >> 4 {
		case 4:
			return 0, 4
		case 6:
			return 0, 6
		}
		return 0, 0
	case linkIPv4:
		return 0, 4
	case linkIPv6:
		return 0, 6
	case linkSLL, linkSLL2:
		at, hdr := 14, 16
		if linkType == linkSLL2 {
			at, hdr = 0, 20
		}
		switch t, _ := be16(frame, at); t {
		case etherIPv4:
			return hdr, 4
		case etherIPv6:
			return hdr, 6
		}
		return 0, 0
	case linkNull, linkLoop:
		if len(frame) < 4 {
			return 0, 0
		}
		// Either byte order: read it both ways.
		for _, fam := range [2]uint32{binary.BigEndian.Uint32(frame), binary.LittleEndian.Uint32(frame)} {
			switch fam {
			case afInet:
				return 4, 4
			case afInet6BSD, afInet6FBS, afInet6Mac:
				return 4, 6
			}
		}
		return 0, 0
	}
	return 0, 0
}

// matchIPv4 tests an IPv4 header starting at ip[0]. ip may be cut short
// anywhere, even before the end of the fixed header.
func (s Spec) matchIPv4(ip []byte) bool {
	if s.HasProto {
		if len(ip) < 10 || ip[9] != s.Proto {
			return false
		}
	}
	if s.HasIP && !(inPrefix(s.Prefix, 32, ip, 12) || inPrefix(s.Prefix, 32, ip, 16)) {
		return false
	}
	if s.HasPort {
		if len(ip) < 10 || !isPortProto(ip[9]) {
			return false
		}
		flags, ok := be16(ip, 6)
		if !ok || flags&0x1fff != 0 { // a later fragment has no ports
			return false
		}
		// The transport header follows IHL 32-bit words, taken as is.
		return s.portAt(ip, int(ip[0]&0x0f)*4)
	}
	return true
}

// matchIPv6 tests an IPv6 header starting at ip[0].
func (s Spec) matchIPv6(ip []byte) bool {
	if s.HasProto {
		if len(ip) < 7 {
			return false
		}
		switch nh := ip[6]; {
		case nh == s.Proto:
		case nh == ipv6Frag:
			// The fragment header's own next header is its first byte.
			if len(ip) < 41 || ip[40] != s.Proto {
				return false
			}
		default:
			return false
		}
	}
	if s.HasIP && !(inPrefix(s.Prefix, 128, ip, 8) || inPrefix(s.Prefix, 128, ip, 24)) {
		return false
	}
	if s.HasPort {
		if len(ip) < 7 || !isPortProto(ip[6]) {
			return false
		}
		return s.portAt(ip, 40)
	}
	return true
}

// portAt reports whether the transport header at ip[at:] has s.Port as its
// source or, failing that, destination port.
func (s Spec) portAt(ip []byte, at int) bool {
	if p, ok := be16(ip, at); !ok {
		return false
	} else if p == s.Port {
		return true
	}
	p, ok := be16(ip, at+2)
	return ok && p == s.Port
}

// inPrefix reports whether the address of bitLen bits (32 or 128) at
// b[at:] is in p; a prefix of the other family never holds it. Only the
// bytes of the 32-bit words the prefix covers need to be in b, as the BPF
// program loads only those: the rest read as zero and p.Contains ignores
// them.
func inPrefix(p netip.Prefix, bitLen int, b []byte, at int) bool {
	if !p.IsValid() || p.Addr().BitLen() != bitLen {
		return false
	}
	need := (p.Bits() + 31) / 32 * 4
	if need == 0 {
		return true // a /0 prefix reads nothing and holds every address
	}
	if at+need > len(b) {
		return false
	}
	var a [16]byte
	if p.Addr().Is4() {
		copy(a[:4], b[at:at+need])
		return p.Contains(netip.AddrFrom4([4]byte(a[:4])))
	}
	copy(a[:], b[at:at+need])
	return p.Contains(netip.AddrFrom16(a))
}

// be16 reads a big-endian 16-bit field at b[at:], if it is all there.
func be16(b []byte, at int) (uint16, bool) {
	if at < 0 || at+2 > len(b) {
		return 0, false
	}
	return binary.BigEndian.Uint16(b[at:]), true
}
