package decode

import "encoding/binary"

// Nesting limits. A frame nesting deeper than this is ErrTooManyLayers: no
// real network stacks this many encapsulations, and the limits keep the
// work per frame bounded whatever the input.
const (
	// MaxTunnels is the number of encapsulations (GRE, VXLAN, Geneve,
	// IP-in-IP, 6in4, MPLS, PPPoE) Decode takes off one frame.
	MaxTunnels = 8
	// maxTags is the number of stacked 802.1Q/802.1ad/VN-Tag/E-Tag/PBB/FabricPath tags
	// followed in one Ethernet header.
	maxTags = 8
	// maxLabels is the depth of an MPLS label stack (segment routing
	// stacks run deeper than VLAN stacks).
	maxLabels = 16
)

// Default UDP destination ports of the UDP tunnels Decode takes off.
const (
	// DefaultVXLANPort is the IANA port of VXLAN (RFC 7348).
	DefaultVXLANPort uint16 = 4789
	// DefaultGenevePort is the IANA port of Geneve (RFC 8926).
	DefaultGenevePort uint16 = 6081
)

// Ethertypes.
const (
	etherTypeIPv4       = 0x0800
	etherTypeIPv6       = 0x86dd
	etherTypeVLAN       = 0x8100 // 802.1Q C-tag
	etherTypeQinQ       = 0x88a8 // 802.1ad S-tag
	etherTypeQinQOld    = 0x9100 // pre-802.1ad QinQ
	etherTypeVNTag      = 0x8926 // Cisco VN-Tag
	etherTypeETag       = 0x893f // 802.1BR E-Tag
	etherTypeFabricPath = 0x8903 // Cisco FabricPath
	etherTypePBB        = 0x88e7 // 802.1ah I-tag
	etherTypeMPLS       = 0x8847
	etherTypeMPLSMcast  = 0x8848
	etherTypePPPoE      = 0x8864 // PPPoE session stage
	etherTypePPP        = 0x880b // PPP in GRE (PPTP)
	etherTypeTEB        = 0x6558 // transparent Ethernet bridging
	etherTypeERSPAN2    = 0x88be // ERSPAN type I and II
	etherTypeERSPAN3    = 0x22eb // ERSPAN type III
)

// Decoder decodes frames into Packets. Create one with NewDecoder and give
// each decoding goroutine its own: Decode only reads the Decoder today, but
// the Decoder is where per-goroutine scratch state belongs, so it is not
// documented as safe for concurrent use.
//
// The exported fields are settings, holding their defaults after
// NewDecoder; change them before the first Decode. The zero Decoder takes
// no UDP tunnel off.
type Decoder struct {
	// VXLANPort is the UDP destination port decapsulated as VXLAN;
	// 0 turns VXLAN decapsulation off. Linux's own default (8472, used by
	// flannel) can be set here.
	VXLANPort uint16
	// GenevePort is the UDP destination port decapsulated as Geneve;
	// 0 turns Geneve decapsulation off.
	GenevePort uint16
}

// NewDecoder returns a Decoder with the default settings.
func NewDecoder() *Decoder {
	return &Decoder{VXLANPort: DefaultVXLANPort, GenevePort: DefaultGenevePort}
}

// Decode decodes one frame. data is the captured bytes (CapLen is len(data)),
// linkType the frame's LINKTYPE_* value (low 16 bits) and length the
// frame's original length on the wire. Decode overwrites *p completely,
// keeps no reference to data and does not allocate.
//
// OK means *p describes the innermost IP conversation of the frame. For any
// other Result the fields of *p are only as far as decoding got (Length and
// CapLen are always set; Src and Dst are set once an IP header was read) and
// the frame belongs to no flow.
//
// Tunnels: GRE (and ERSPAN inside it), VXLAN, Geneve, IP-in-IP, 6in4, MPLS
// and PPPoE are taken off so that *p describes the innermost conversation. When a tunnel carries
// something other than IP (ARP in VXLAN, PPP control or encrypted PPP in
// PPTP's GRE, a GRE ack without payload, an unknown GRE protocol), the
// outer packet is the flow: the GRE packet (Proto 47, no ports) or the UDP
// datagram between the tunnel endpoints. When the inner IP packet is
// malformed or truncated, the error is reported, so that an inner
// conversation never leaks into the tunnel's flow. Teredo, GTP and other
// UDP tunnels are not taken off: they are UDP flows.
func (d *Decoder) Decode(data []byte, linkType uint16, length uint32, p *Packet) Result {
	*p = Packet{Length: length, CapLen: uint32(len(data))}
	switch linkType {
	case LinkTypeEthernet:
		return d.ethernet(data, p)
	case LinkTypeRaw, LinkTypeRaw12, LinkTypeRaw14:
		return d.rawIP(data, p)
	case LinkTypeIPv4:
		return d.ipv4(data, p)
	case LinkTypeIPv6:
		return d.ipv6(data, p)
	case LinkTypeLinuxSLL:
		// Linux cooked v1: packet type(2) ARPHRD type(2) address length(2)
		// address(8) protocol(2). https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html
		if len(data) < 16 {
			return ErrTruncatedLink
		}
		return d.sll(be16(data[2:]), be16(data[14:]), data[16:], p)
	case LinkTypeSLL2:
		// Linux cooked v2: protocol(2) reserved(2) ifindex(4) ARPHRD
		// type(2) packet type(1) address length(1) address(8).
		// https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html
		if len(data) < 20 {
			return ErrTruncatedLink
		}
		return d.sll(be16(data[8:]), be16(data[0:]), data[20:], p)
	case LinkTypeNull:
		// The address family is in the byte order of the host that wrote
		// the file. Family values are small, so a value with any of the
		// upper 16 bits set was written by a host of the other order.
		if len(data) < 4 {
			return ErrTruncatedLink
		}
		fam := binary.LittleEndian.Uint32(data)
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(data)
		}
		return d.loopback(fam, data[4:], p)
	case LinkTypeLoop:
		// OpenBSD loopback: the family in network byte order.
		if len(data) < 4 {
			return ErrTruncatedLink
		}
		return d.loopback(binary.BigEndian.Uint32(data), data[4:], p)
	}
	return UnsupportedLink
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// rawIP decodes an IP packet whose version nibble decides its kind.
func (d *Decoder) rawIP(b []byte, p *Packet) Result {
	if len(b) == 0 {
		return ErrTruncatedIP
	}
	switch b[0] >> 4 {
	case 4:
		return d.ipv4(b, p)
	case 6:
		return d.ipv6(b, p)
	}
	return ErrBadIPVersion
}

// loopback decodes the payload of a BSD loopback header with address
// family fam. AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD, OpenBSD),
// 28 (FreeBSD) or 30 (Darwin), as in libpcap's LINKTYPE_NULL description.
func (d *Decoder) loopback(fam uint32, b []byte, p *Packet) Result {
	switch fam {
	case 2:
		return d.ipv4(b, p)
	case 24, 28, 30:
		return d.ipv6(b, p)
	}
	return NonIP
}

// sll decodes the payload of a Linux cooked header given its ARPHRD type
// and protocol field.
func (d *Decoder) sll(hatype, proto uint16, b []byte, p *Packet) Result {
	switch hatype {
	case 824, // ARPHRD_NETLINK: protocol is the netlink family
		801, 802, 803: // ARPHRD_IEEE80211{,_PRISM,_RADIOTAP}
		return NonIP
	}
	// sll(7)/packet(7): protocol values below 0x0600 are Linux's
	// ETH_P_802_3 (1), ETH_P_802_2 (4) and the like, not ethertypes.
	if proto == 4 {
		return d.llc(b, p)
	}
	if proto < 0x0600 {
		return NonIP
	}
	return d.etherType(proto, b, p, true)
}

// ethernet decodes an Ethernet II or IEEE 802.3 frame.
func (d *Decoder) ethernet(b []byte, p *Packet) Result {
	if len(b) < 14 {
		return ErrTruncatedLink
	}
	return d.etherType(be16(b[12:]), b[14:], p, true)
}

// etherType decodes b, the payload of a header whose type field is et,
// following stacked tags first. A type of 1500 or less is an IEEE 802.3
// length followed by LLC when llcOK.
func (d *Decoder) etherType(et uint16, b []byte, p *Packet, llcOK bool) Result {
	for tags := 0; ; tags++ {
		if tags == maxTags {
			switch et {
			case etherTypeVLAN, etherTypeQinQ, etherTypeQinQOld, etherTypeVNTag,
				etherTypeETag, etherTypePBB, etherTypeFabricPath:
				return ErrTooManyLayers
			}
		}
		switch et {
		case etherTypeVLAN, etherTypeQinQ, etherTypeQinQOld:
			// TCI(2) (PCP 3 bits, DEI 1, VID 12) then the next type.
			if len(b) < 4 {
				return ErrTruncatedLink
			}
			if !p.HasVLAN {
				p.VLAN = be16(b) & 0x0fff
				p.HasVLAN = true
			}
			et = be16(b[2:])
			b = b[4:]
		case etherTypeVNTag:
			// VN-Tag: 4 bytes of tag, then the next type.
			if len(b) < 6 {
				return ErrTruncatedLink
			}
			et = be16(b[4:])
			b = b[6:]
		case etherTypeETag:
			// E-Tag: 6 bytes of tag, then the next type.
			if len(b) < 8 {
				return ErrTruncatedLink
			}
			et = be16(b[6:])
			b = b[8:]
		case etherTypeFabricPath:
			// FabricPath: FTag and TTL (2), then the classical Ethernet
			// frame's destination and source MAC addresses and type.
			if len(b) < 16 {
				return ErrTruncatedLink
			}
			et = be16(b[14:])
			b = b[16:]
		case etherTypePBB:
			// 802.1ah: I-TAG(4), then the customer's destination and source
			// MAC addresses and type.
			if len(b) < 18 {
				return ErrTruncatedLink
			}
			et = be16(b[16:])
			b = b[18:]
		default:
			return d.etherPayload(et, b, p, llcOK)
		}
	}
}

// etherPayload dispatches on an ethertype once the tags are taken off.
func (d *Decoder) etherPayload(et uint16, b []byte, p *Packet, llcOK bool) Result {
	switch et {
	case etherTypeIPv4:
		return d.ipv4(b, p)
	case etherTypeIPv6:
		return d.ipv6(b, p)
	case etherTypeMPLS, etherTypeMPLSMcast:
		return d.mpls(b, p)
	case etherTypePPPoE:
		return d.pppoe(b, p)
	}
	if et <= 1500 && llcOK {
		return d.llc(b, p)
	}
	// ARP, LLDP, PPPoE discovery, EAPOL, loopback, and anything else.
	return NonIP
}

// llc decodes an IEEE 802.2 LLC header. Only SNAP with an ethertype (OUI
// 00-00-00, RFC 1042, or 00-00-F8, 802.1H) can carry IP; every other LLC
// frame (STP, CDP, NetBIOS...) is NonIP.
func (d *Decoder) llc(b []byte, p *Packet) Result {
	if len(b) < 3 {
		return ErrTruncatedLink
	}
	if b[0] != 0xaa || b[1] != 0xaa || b[2] != 0x03 {
		return NonIP
	}
	if len(b) < 8 {
		return ErrTruncatedLink
	}
	if b[3] != 0 || b[4] != 0 || (b[5] != 0 && b[5] != 0xf8) {
		return NonIP
	}
	return d.etherType(be16(b[6:]), b[8:], p, false)
}
