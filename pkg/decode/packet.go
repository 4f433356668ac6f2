// Package decode turns the bytes of one captured frame and its link type into
// a Packet: the innermost IP conversation the frame belongs to, without
// allocating. It owns link-layer, tunnel, IP and transport parsing; it knows
// nothing of flows, files or sockets, and never logs. Bad input is a counted
// Result, never a panic.
package decode

import "net/netip"

// Link types (LINKTYPE_* values of the pcap and pcapng formats). Callers pass
// the low 16 bits of the file's link-type field.
const (
	LinkTypeNull     uint16 = 0   // BSD loopback: 4-byte address family, host byte order
	LinkTypeEthernet uint16 = 1   // IEEE 802.3 Ethernet
	LinkTypeRaw      uint16 = 101 // raw IPv4 or IPv6, version in the first nibble
	LinkTypeLoop     uint16 = 108 // OpenBSD loopback: 4-byte address family, network byte order
	LinkTypeLinuxSLL uint16 = 113 // Linux cooked capture v1
	LinkTypeIPv4     uint16 = 228 // raw IPv4
	LinkTypeIPv6     uint16 = 229 // raw IPv6
	LinkTypeSLL2     uint16 = 276 // Linux cooked capture v2
	// LinkTypeRaw12 and LinkTypeRaw14 are the historical DLT values some
	// systems write for raw IP.
	LinkTypeRaw12 uint16 = 12
	LinkTypeRaw14 uint16 = 14
)

// IP protocol numbers used by the decoder and its callers.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

// TCP flag bits, as in the TCP header's flags byte.
const (
	TCPFin uint8 = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
	TCPEce
	TCPCwr
)

// Frag says whether a packet is an IP fragment and which kind.
type Frag uint8

const (
	// NotFragment is a whole datagram.
	NotFragment Frag = iota
	// FirstFragment has offset 0 and more fragments follow: it carries the
	// transport header, so Src/Dst/Proto/ports are those of the flow.
	FirstFragment
	// LaterFragment has a non-zero offset: there is no transport header.
	// Src, Dst and Proto are those of the fragmented IP header, ports are
	// zero, and FragKey identifies the datagram it belongs to.
	LaterFragment
)

// FragKey identifies one fragmented datagram: the addresses, protocol and
// identification of the IP header that carries the fragment (IPv4) or
// Fragment extension header (IPv6). When a tunnel's outer header is the one
// fragmented, FragKey is the outer header's while Src/Dst are the inner
// conversation's (in the first fragment).
type FragKey struct {
	Src, Dst netip.Addr
	ID       uint32
	Proto    uint8
}

// Packet is the decoded view of one frame. It is a fixed-size value the
// caller owns and reuses: Decode overwrites every field and keeps no
// reference to the frame's bytes.
type Packet struct {
	// Length is the frame's original length on the wire; CapLen the number
	// of bytes captured. They are copied from the caller's arguments.
	Length uint32
	CapLen uint32

	// VLAN is the outermost 802.1Q/802.1ad VLAN ID, valid when HasVLAN.
	// A priority tag (VID 0) sets HasVLAN with VLAN 0.
	VLAN    uint16
	HasVLAN bool

	// Src and Dst are the innermost IP header's addresses (after any tunnel
	// is taken off). IPv4 addresses are 4-byte (netip.Addr.Is4). While an
	// IPv4 source route option or an IPv6 routing header has addresses
	// left to visit, Dst is the final destination, and an IPv6 Home
	// Address option gives Src: the flow is between the endpoints, as Zeek
	// and Wireshark's conversations key it (the header holds a waypoint).
	Src, Dst netip.Addr
	// Proto is the innermost transport protocol: the last Next Header after
	// IPv6 extension headers, or IPv4's protocol field.
	Proto uint8

	// SrcPort and DstPort are TCP, UDP and SCTP ports. For ICMP and ICMPv6,
	// SrcPort is the type and DstPort the code. Zero for other protocols.
	SrcPort, DstPort uint16
	// HasPorts is true when the transport header was present and parsed
	// (TCP, UDP, SCTP, ICMP, ICMPv6).
	HasPorts bool

	// TCP only.
	TCPFlags uint8
	Seq, Ack uint32
	Window   uint16

	// Payload is the number of transport payload bytes the IP header
	// announces (TCP data, UDP data), independent of the snapshot length.
	// For SCTP it counts the bytes after the common header, for ICMP and
	// ICMPv6 those after the 8-byte header, and for other protocols (and
	// a later fragment) the whole IP payload.
	Payload uint32

	// Fragment state of the innermost fragmented IP header, if any.
	Frag    Frag
	FragKey FragKey

	// Tunnels is the number of encapsulations taken off (GRE (with any
	// ERSPAN header), VXLAN, Geneve, IP-in-IP, 6in4, MPLS and PPPoE count
	// one each), at most MaxTunnels.
	Tunnels uint8
}

// Result is the outcome of decoding one frame. Only OK produces a Packet
// that belongs to a flow; every other result is counted by its String.
type Result uint8

// Results. The error results name the layer that failed.
const (
	OK              Result = iota
	NonIP                  // well-formed frame without IP (ARP, STP, LLDP, PPP control…)
	UnsupportedLink        // a link type this decoder does not read
	ErrTruncatedLink
	ErrBadLink       // malformed link-layer or encapsulation header
	ErrTooManyLayers // more nested encapsulations than the decoder follows
	ErrTruncatedIP   // IP header cut short
	ErrBadIPVersion  // version nibble does not match the link or ethertype
	ErrBadIPHeader   // IPv4 IHL < 5, total length below the header, bad ext header chain
	ErrTruncatedTransport
	ErrBadTransport // TCP data offset < 5, UDP length < 8 and the like
	numResults
)

var resultNames = [numResults]string{
	OK:                    "ok",
	NonIP:                 "non_ip",
	UnsupportedLink:       "unsupported_link_type",
	ErrTruncatedLink:      "truncated_link",
	ErrBadLink:            "bad_link",
	ErrTooManyLayers:      "too_many_layers",
	ErrTruncatedIP:        "truncated_ip",
	ErrBadIPVersion:       "bad_ip_version",
	ErrBadIPHeader:        "bad_ip_header",
	ErrTruncatedTransport: "truncated_transport",
	ErrBadTransport:       "bad_transport",
}

// String returns the snake_case name used in statistics.
func (r Result) String() string {
	if r < numResults {
		return resultNames[r]
	}
	return "unknown"
}

// NumResults is the number of distinct Results, for counter arrays indexed
// by Result.
const NumResults = int(numResults)
