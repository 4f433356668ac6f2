package decode

// enter counts one more encapsulation taken off, or reports false when the
// frame nests deeper than MaxTunnels.
func enter(p *Packet) bool {
	if p.Tunnels >= MaxTunnels {
		return false
	}
	p.Tunnels++
	return true
}

// gre decodes a GRE header and, when it carries IP, the inner packet. The
// caller has set p for the GRE packet itself (Proto 47), which stays the
// flow when the payload is not IP.
func (d *Decoder) gre(b []byte, plen int, p *Packet) Result {
	p.Payload = uint32(plen)
	if r := needTransport(b, plen, 4, p); r != OK {
		return r
	}
	flags, proto := be16(b), be16(b[2:])
	n := 4
	switch flags & 7 { // version
	case 0:
		// RFC 2784 with RFC 2890's key and sequence number. RFC 1701
		// source routing (R bit) is obsolete and not followed.
		if flags&0x4000 != 0 {
			return OK
		}
		for _, bit := range [...]uint16{0x8000, 0x2000, 0x1000} { // C, K, S
			if flags&bit != 0 {
				n += 4
			}
		}
	case 1:
		// RFC 2637 enhanced GRE (PPTP): the key (payload length and call
		// ID) is always there, a sequence number only when there is a
		// payload, an acknowledgment number when A is set.
		if flags&0x2000 == 0 || proto != etherTypePPP {
			return OK
		}
		if flags&0x1000 == 0 {
			return OK // acknowledgment only
		}
		n += 8
		if flags&0x0080 != 0 {
			n += 4
		}
	default:
		return OK
	}
	switch proto {
	case etherTypeIPv4, etherTypeIPv6, etherTypeTEB, etherTypeMPLS,
		etherTypeMPLSMcast, etherTypePPP, etherTypeERSPAN2, etherTypeERSPAN3:
	default:
		return OK // a payload this decoder does not follow
	}
	if r := needTransport(b, plen, n, p); r != OK {
		return r
	}
	b = b[n:]
	outer := *p
	if !enter(p) {
		return ErrTooManyLayers
	}
	var r Result
	switch proto {
	case etherTypeIPv4:
		r = d.ipv4(b, p)
	case etherTypeIPv6:
		r = d.ipv6(b, p)
	case etherTypeTEB:
		r = d.ethernet(b, p)
	case etherTypeMPLS, etherTypeMPLSMcast:
		r = d.mpls(b, p)
	case etherTypePPP:
		r = d.ppp(b, p)
	case etherTypeERSPAN2:
		// ERSPAN type I has no header of its own and no GRE sequence
		// number; type II has both, and an 8-byte header.
		if flags&0x1000 == 0 {
			r = d.ethernet(b, p)
		} else if len(b) < 8 {
			r = ErrTruncatedLink
		} else {
			r = d.ethernet(b[8:], p)
		}
	case etherTypeERSPAN3:
		// ERSPAN type III: a 12-byte header, and 8 more bytes of
		// platform-specific subheader when O (last bit) is set.
		if len(b) < 12 || (b[11]&1 != 0 && len(b) < 20) {
			r = ErrTruncatedLink
		} else if b[11]&1 != 0 {
			r = d.ethernet(b[20:], p)
		} else {
			r = d.ethernet(b[12:], p)
		}
	}
	if r == NonIP {
		*p = outer
		return OK
	}
	return r
}

// ppp decodes a PPP frame (RFC 1661) as carried by GRE and PPPoE. The
// address and control fields (ff 03) may be there or not, and the protocol
// field may be compressed to one byte (RFC 1661 6.5, 6.6).
func (d *Decoder) ppp(b []byte, p *Packet) Result {
	if len(b) >= 2 && b[0] == 0xff && b[1] == 0x03 {
		b = b[2:]
	}
	if len(b) == 0 {
		return NonIP
	}
	var proto uint16
	if b[0]&1 != 0 {
		proto, b = uint16(b[0]), b[1:]
	} else {
		if len(b) < 2 {
			return ErrTruncatedLink
		}
		proto, b = be16(b), b[2:]
	}
	switch proto {
	case 0x0021:
		return d.ipv4(b, p)
	case 0x0057:
		return d.ipv6(b, p)
	}
	// LCP, IPCP, IPv6CP, CCP, compressed or encrypted data...
	return NonIP
}

// pppoe decodes a PPPoE session-stage header (RFC 2516) and its PPP frame.
func (d *Decoder) pppoe(b []byte, p *Packet) Result {
	// ver(4)=1 type(4)=1, code=0, session ID(2), length(2), PPP protocol(2).
	if len(b) < 8 {
		return ErrTruncatedLink
	}
	if b[0] != 0x11 || b[1] != 0 {
		return ErrBadLink
	}
	if !enter(p) {
		return ErrTooManyLayers
	}
	return d.ppp(b[6:], p)
}

// mpls walks an MPLS label stack (RFC 3032) to its bottom and guesses the
// payload from its first nibble, as routers and Wireshark do. Payloads
// that are not IP (pseudowires with or without a control word) are NonIP.
func (d *Decoder) mpls(b []byte, p *Packet) Result {
	if !enter(p) {
		return ErrTooManyLayers
	}
	for i := 0; ; i++ {
		if i == maxLabels {
			return ErrTooManyLayers
		}
		if len(b) < 4 {
			return ErrTruncatedLink
		}
		bottom := b[2]&1 != 0
		b = b[4:]
		if bottom {
			break
		}
	}
	if len(b) == 0 {
		return ErrTruncatedLink
	}
	switch b[0] >> 4 {
	case 4:
		return d.ipv4(b, p)
	case 6:
		return d.ipv6(b, p)
	}
	return NonIP
}

// vxlan decodes the payload b of a UDP datagram sent to the VXLAN port.
// Without a VXLAN header (RFC 7348: flags with I set, 8 bytes), or when
// the inner frame is not IP, the UDP datagram is the flow.
func (d *Decoder) vxlan(b []byte, p *Packet) Result {
	if len(b) < 8 || b[0]&0x08 == 0 {
		return OK
	}
	outer := *p
	if !enter(p) {
		return ErrTooManyLayers
	}
	r := d.ethernet(b[8:], p)
	if r == NonIP {
		*p = outer
		return OK
	}
	return r
}

// geneve decodes the payload b of a UDP datagram sent to the Geneve port
// (RFC 8926: version(2) option length(6, 4-byte units) flags(8)
// protocol(16) VNI(24) reserved(8), options). Without a version 0 header,
// or when the inner frame is not IP, the UDP datagram is the flow.
func (d *Decoder) geneve(b []byte, p *Packet) Result {
	if len(b) < 8 || b[0]>>6 != 0 {
		return OK
	}
	n := 8 + int(b[0]&0x3f)<<2
	proto := be16(b[2:])
	switch proto {
	case etherTypeTEB, etherTypeIPv4, etherTypeIPv6:
	default:
		return OK
	}
	if len(b) < n {
		return OK
	}
	b = b[n:]
	outer := *p
	if !enter(p) {
		return ErrTooManyLayers
	}
	var r Result
	switch proto {
	case etherTypeTEB:
		r = d.ethernet(b, p)
	case etherTypeIPv4:
		r = d.ipv4(b, p)
	default:
		r = d.ipv6(b, p)
	}
	if r == NonIP {
		*p = outer
		return OK
	}
	return r
}
