// Package capfilter turns the capture filter flags (--filter-port,
// --filter-ip, --filter-protocol) into a Spec, compiles a Spec into a
// classic BPF program for the kernel (SO_ATTACH_FILTER on the AF_PACKET
// socket), and evaluates the same Spec in user space with Match, for files
// and as the fallback where no kernel filter can be attached.
//
// # Semantics
//
// The given filters are ANDed. They follow tcpdump's (libpcap 1.10's)
// primitives, so a filter means what it would mean to tcpdump:
//
//   - Port N is tcpdump's "port N": a TCP, UDP or SCTP source or destination
//     port. In IPv4 only a datagram's first fragment (fragment offset 0)
//     carries ports; the transport header is found from the IHL field. In
//     IPv6 the port is only looked for when the next header of the fixed
//     header is TCP, UDP or SCTP: like libpcap, extension headers are not
//     walked, so a TCP segment behind a hop-by-hop, routing or fragment
//     header does not match a port filter.
//   - An address or CIDR prefix is tcpdump's "ip net P" or "ip6 net P": the
//     source or destination address is in the prefix. An IPv4 prefix never
//     matches an IPv6 packet, and an IPv6 prefix (IPv4-mapped ones included)
//     never matches an IPv4 packet. Unlike tcpdump's bare "net", ARP is never
//     matched.
//   - A protocol is tcpdump's "proto N": the IPv4 protocol field, or the
//     IPv6 fixed header's next header. As in libpcap, an IPv6 fragment
//     header right after the fixed header is looked through (next header 44
//     whose own next header is N also matches), so every fragment of an
//     IPv6 datagram matches its protocol, as every IPv4 fragment does.
//     Names map to numbers (icmp is 1, icmpv6 58) and the number is compared
//     in both IP versions.
//
// Only the outermost IP header is examined: tunnels (IP in IP, GRE, VXLAN,
// Geneve, Teredo…) are not looked into. Frames that are not IPv4 or IPv6
// never match a non-empty Spec. As in libpcap, header fields are taken at
// face value (an IPv4 IHL below 5 is not rejected) and a field beyond the
// captured bytes makes its test false.
//
// # Link types
//
// Frames are located by link type (LINKTYPE_* values, low 16 bits):
// Ethernet (1), with up to two 802.1Q/802.1ad tags (TPID 0x8100 or 0x88a8)
// before the EtherType (libpcap's "vlan" also takes 0x9100; this package
// does not); raw IP (101, and the historical DLT values 12 and 14), whose
// version is the first nibble; raw IPv4 (228) and raw IPv6 (229); Linux
// cooked capture SLL (113) and SLL2 (276); and BSD loopback NULL (0) and
// OpenBSD LOOP (108), whose 4-byte address family (2 for IPv4; 24, 28 or 30
// for IPv6) is accepted in either byte order.
//
// Live capture on Linux "any" uses a SOCK_DGRAM packet socket, whose kernel
// filter sees the network header at offset 0: compile for raw IP (101)
// there.
//
// The package imports only the standard library and golang.org/x/net/bpf.
// A Spec is a plain value, safe for concurrent use.
package capfilter
