package decode

import "net/netip"

// IP protocol numbers of IPv6 extension headers and of the tunnels Decode
// takes off.
const (
	protoHopByHop = 0
	protoIPIP     = 4
	protoIPv6     = 41
	protoRouting  = 43
	protoFragment = 44
	protoGRE      = 47
	protoAH       = 51
	protoNoNext   = 59
	protoDstOpts  = 60
	protoMobility = 135
	protoHIP      = 139
	protoShim6    = 140
	protoExp253   = 253
	protoExp254   = 254
)

// uncaptured returns the number of the frame's bytes the capture cut off.
func uncaptured(p *Packet) int {
	if p.Length > p.CapLen {
		return int(p.Length - p.CapLen)
	}
	return 0
}

// clearTransport forgets what an outer header's transport said, so that the
// inner header starts from nothing.
func clearTransport(p *Packet) {
	p.Proto = 0
	p.SrcPort, p.DstPort, p.HasPorts = 0, 0, false
	p.TCPFlags, p.Seq, p.Ack, p.Window = 0, 0, 0, 0
	p.Payload = 0
}

// ipv4 decodes an IPv4 header and what it carries (RFC 791).
func (d *Decoder) ipv4(b []byte, p *Packet) Result {
	if len(b) == 0 {
		return ErrTruncatedIP
	}
	if b[0]>>4 != 4 {
		return ErrBadIPVersion
	}
	if len(b) < 20 {
		return ErrTruncatedIP
	}
	ihl := int(b[0]&0x0f) << 2
	total := int(be16(b[2:]))
	if ihl < 20 || (total < ihl && total != 0) {
		return ErrBadIPHeader
	}
	if len(b) < ihl {
		return ErrTruncatedIP
	}
	if total == 0 {
		// TCP segmentation offload: a capture taken before the NIC
		// segments the data shows a total length of 0. The packet is as
		// long as the rest of the frame.
		total = len(b) + uncaptured(p)
	}
	if len(b) > total {
		b = b[:total] // Ethernet padding or a trailer
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	proto := b[9]
	p.Src, p.Dst = src, dst
	if ihl > 20 {
		if a, ok := sourceRouteDestination(b[20:ihl]); ok {
			p.Dst = a
		}
	}
	clearTransport(p)
	p.Proto = proto
	plen := total - ihl
	if fo := be16(b[6:]); fo&0x3fff != 0 { // MF or fragment offset
		p.FragKey = FragKey{Src: src, Dst: dst, ID: uint32(be16(b[4:])), Proto: proto}
		if fo&0x1fff != 0 {
			// No transport header here; nor a tunnel's inner header.
			p.Frag = LaterFragment
			p.Payload = uint32(plen)
			return OK
		}
		p.Frag = FirstFragment
	}
	return d.transport(proto, b[ihl:], plen, false, p)
}

// sourceRouteDestination returns the final destination of a loose or
// strict source route option (RFC 791) among the IPv4 options opts, while
// the route has addresses left: the flow is between the endpoints, as
// tshark shows it (and as the TCP and UDP pseudo-header uses it).
func sourceRouteDestination(opts []byte) (netip.Addr, bool) {
	for len(opts) > 0 {
		switch opts[0] {
		case 0: // end of options
			return netip.Addr{}, false
		case 1: // no operation
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || opts[1] < 2 || int(opts[1]) > len(opts) {
			return netip.Addr{}, false
		}
		o := opts[:opts[1]]
		opts = opts[len(o):]
		if o[0] != 131 && o[0] != 137 || len(o) < 7 {
			continue
		}
		// type, length, pointer (1-based, past the end once the route
		// is done), then the route's addresses.
		if int(o[2]) > len(o) {
			return netip.Addr{}, false
		}
		n := (len(o) - 3) / 4
		return netip.AddrFrom4([4]byte(o[3+4*(n-1) : 3+4*n])), true
	}
	return netip.Addr{}, false
}

// ipv6 decodes an IPv6 header, walks its extension headers (RFC 8200) and
// decodes what they carry.
func (d *Decoder) ipv6(b []byte, p *Packet) Result {
	if len(b) == 0 {
		return ErrTruncatedIP
	}
	if b[0]>>4 != 6 {
		return ErrBadIPVersion
	}
	if len(b) < 40 {
		return ErrTruncatedIP
	}
	plen := int(be16(b[4:]))
	next := b[6]
	src := netip.AddrFrom16([16]byte(b[8:24]))
	dst := netip.AddrFrom16([16]byte(b[24:40]))
	b = b[40:]
	if plen == 0 && next != protoNoNext {
		if j, ok := jumboLength(next, b); ok {
			// RFC 2675 jumbogram, no longer than the rest of the frame.
			plen = min(j, len(b)+uncaptured(p))
		} else {
			// Segmentation offload (as for IPv4 above): the rest of the frame.
			plen = len(b) + uncaptured(p)
		}
	}
	if len(b) > plen {
		b = b[:plen]
	}
	p.Src, p.Dst = src, dst
	clearTransport(p)
	for {
		switch next {
		case protoHopByHop, protoRouting, protoDstOpts, protoMobility,
			protoHIP, protoShim6, protoExp253, protoExp254, protoAH:
			if r := needExt(b, plen, 2); r != OK {
				return r
			}
			hl := (int(b[1]) + 1) << 3
			if next == protoAH {
				hl = (int(b[1]) + 2) << 2 // RFC 4302: in 4-byte units, minus 2
			}
			if r := needExt(b, plen, hl); r != OK {
				return r
			}
			// The flow is between the endpoints, as Zeek and Wireshark
			// see it: a routing header's final destination and a home
			// address option replace the header's addresses.
			switch next {
			case protoRouting:
				if a, ok := finalDestination(b[:hl]); ok {
					p.Dst = a
				}
			case protoDstOpts:
				if a, ok := homeAddress(b[:hl]); ok {
					p.Src = a
				}
			}
			next = b[0]
			b = b[hl:]
			plen -= hl
		case protoFragment:
			if r := needExt(b, plen, 8); r != OK {
				return r
			}
			fo := be16(b[2:]) // offset(13) reserved(2) M(1)
			nh := b[0]
			if fo&0xfff9 != 0 { // an atomic fragment (offset 0, M 0) is whole
				p.FragKey = FragKey{Src: src, Dst: dst, ID: be32(b[4:]), Proto: nh}
				if fo>>3 != 0 {
					p.Frag = LaterFragment
					p.Proto = nh
					p.Payload = uint32(plen - 8)
					return OK
				}
				p.Frag = FirstFragment
			}
			next = nh
			b = b[8:]
			plen -= 8
		default:
			// An upper-layer protocol, ESP (50) or No Next Header (59).
			return d.transport(next, b, plen, true, p)
		}
	}
}

// needExt checks that an extension header of n bytes is there.
func needExt(b []byte, plen, n int) Result {
	switch {
	case len(b) >= n:
		return OK
	case plen < n:
		return ErrBadIPHeader // longer than the payload length says
	}
	return ErrTruncatedIP
}

// jumboLength returns the Jumbo Payload option's length (RFC 2675) from
// the Hop-by-Hop header at the start of b, if there is one.
func jumboLength(next uint8, b []byte) (int, bool) {
	if next != protoHopByHop || len(b) < 8 {
		return 0, false
	}
	hl := (int(b[1]) + 1) << 3
	if hl > len(b) {
		hl = len(b)
	}
	if v, ok := findOption(b[2:hl], 0xc2, 4); ok {
		return int(be32(v)), true
	}
	return 0, false
}

// homeAddress returns the Home Address option (RFC 6275 6.3) of the
// Destination Options header h.
func homeAddress(h []byte) (netip.Addr, bool) {
	if v, ok := findOption(h[2:], 0xc9, 16); ok {
		return netip.AddrFrom16([16]byte(v)), true
	}
	return netip.Addr{}, false
}

// findOption returns the value of the first option of type typ and length
// n in the TLV-encoded options opts.
func findOption(opts []byte, typ uint8, n int) ([]byte, bool) {
	for len(opts) > 0 {
		if opts[0] == 0 { // Pad1
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 {
			break
		}
		l := int(opts[1])
		if len(opts) < 2+l {
			break
		}
		if opts[0] == typ && l == n {
			return opts[2 : 2+l], true
		}
		opts = opts[2+l:]
	}
	return nil, false
}

// finalDestination returns the destination a routing header h (of at least
// 8 bytes) leads to when segments are left: the last address of a type 0
// header (RFC 2460), the home address of a type 2 (RFC 6275) and segment 0
// of a segment routing header, type 4 (RFC 8754).
func finalDestination(h []byte) (netip.Addr, bool) {
	if h[3] == 0 { // segments left
		return netip.Addr{}, false
	}
	switch h[2] {
	case 0:
		if n := (len(h) - 8) / 16; n > 0 {
			return netip.AddrFrom16([16]byte(h[8+16*(n-1) : 8+16*n])), true
		}
	case 2, 4:
		if len(h) >= 24 {
			return netip.AddrFrom16([16]byte(h[8:24])), true
		}
	}
	return netip.Addr{}, false
}

// needTransport checks that a transport (or GRE) header of n bytes is
// there: a header longer than the IP payload is malformed; one cut by the
// snapshot length, or continued in the next fragment, is truncated.
func needTransport(b []byte, plen, n int, p *Packet) Result {
	switch {
	case len(b) >= n:
		return OK
	case plen < n && p.Frag == NotFragment:
		return ErrBadTransport
	}
	return ErrTruncatedTransport
}

// transport decodes the IP payload b of protocol proto. plen is the payload
// length the IP header announces; len(b) <= plen.
func (d *Decoder) transport(proto uint8, b []byte, plen int, v6 bool, p *Packet) Result {
	for {
		p.Proto = proto
		switch proto {
		case ProtoTCP:
			if r := needTransport(b, plen, 20, p); r != OK {
				return r
			}
			off := int(b[12]>>4) << 2
			if off < 20 || (off > plen && p.Frag == NotFragment) {
				return ErrBadTransport
			}
			// Options cut by the snapshot length are not needed.
			p.SrcPort, p.DstPort, p.HasPorts = be16(b), be16(b[2:]), true
			p.Seq, p.Ack = be32(b[4:]), be32(b[8:])
			p.TCPFlags, p.Window = b[13], be16(b[14:])
			p.Payload = uint32(max(plen-off, 0))
			return OK
		case ProtoUDP:
			if r := needTransport(b, plen, 8, p); r != OK {
				return r
			}
			n := int(be16(b[4:]))
			switch {
			case n == 0 && v6:
				n = plen // RFC 2675: jumbogram
			case n < 8:
				return ErrBadTransport
			case n > plen && p.Frag == NotFragment:
				n = plen // the IP length is the one the network used
			}
			p.SrcPort, p.DstPort, p.HasPorts = be16(b), be16(b[2:]), true
			p.Payload = uint32(max(n-8, 0))
			switch {
			case d.VXLANPort != 0 && p.DstPort == d.VXLANPort:
				return d.vxlan(b[8:], p)
			case d.GenevePort != 0 && p.DstPort == d.GenevePort:
				return d.geneve(b[8:], p)
			}
			return OK
		case ProtoSCTP:
			if r := needTransport(b, plen, 12, p); r != OK { // common header
				return r
			}
			p.SrcPort, p.DstPort, p.HasPorts = be16(b), be16(b[2:]), true
			p.Payload = uint32(max(plen-12, 0))
			return OK
		case ProtoICMP, ProtoICMPv6:
			// Type, code, checksum. Headers quoted by an error message are
			// not decoded: the ICMP packet is the flow.
			if r := needTransport(b, plen, 4, p); r != OK {
				return r
			}
			p.SrcPort, p.DstPort, p.HasPorts = uint16(b[0]), uint16(b[1]), true
			p.Payload = uint32(max(plen-8, 0))
			return OK
		case protoGRE:
			return d.gre(b, plen, p)
		case protoIPIP:
			if !enter(p) {
				return ErrTooManyLayers
			}
			return d.ipv4(b, p)
		case protoIPv6:
			if !enter(p) {
				return ErrTooManyLayers
			}
			return d.ipv6(b, p)
		case protoAH:
			// Authentication header over IPv4 (RFC 4302); IPv6 walks it
			// with the other extension headers.
			if r := needTransport(b, plen, 2, p); r != OK {
				return r
			}
			n := (int(b[1]) + 2) << 2
			if r := needTransport(b, plen, n, p); r != OK {
				return r
			}
			proto = b[0]
			b = b[n:]
			plen -= n
		default:
			p.Payload = uint32(plen)
			return OK
		}
	}
}
