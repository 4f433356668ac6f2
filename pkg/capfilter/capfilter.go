package capfilter

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lightshark-dev/lightshark-mini/pkg/config"
)

// Link types this package understands (LINKTYPE_* values, low 16 bits).
const (
	linkNull     = 0   // BSD loopback: 4-byte address family, host byte order
	linkEthernet = 1   // IEEE 802.3 Ethernet
	linkRaw12    = 12  // raw IP, historical DLT_RAW
	linkRaw14    = 14  // raw IP, DLT_RAW on OpenBSD
	linkRaw      = 101 // raw IPv4 or IPv6, version in the first nibble
	linkLoop     = 108 // OpenBSD loopback: 4-byte address family, network byte order
	linkSLL      = 113 // Linux cooked capture v1: 16-byte header, protocol at 14
	linkIPv4     = 228 // raw IPv4
	linkIPv6     = 229 // raw IPv6
	linkSLL2     = 276 // Linux cooked capture v2: 20-byte header, protocol at 0
)

// IP protocol numbers the filter knows by name.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// ErrLinkType is returned (wrapped, naming the link type) by Compile for a
// link type the filter cannot locate the IP header in.
var ErrLinkType = errors.New("unsupported link type")

// Spec is a capture filter: the conjunction of the filters whose Has flag is
// set. The zero Spec is empty and accepts every frame. See the package
// documentation for what each filter matches.
type Spec struct {
	// Port is a TCP, UDP or SCTP port, source or destination.
	Port    uint16
	HasPort bool
	// Prefix holds the source or destination address must be in. A single
	// address is a /32 or /128 prefix. Bits beyond the prefix length are
	// ignored. A Spec with HasIP and an invalid Prefix matches nothing and
	// does not compile.
	Prefix netip.Prefix
	HasIP  bool
	// Proto is an IP protocol number (IPv4 protocol, IPv6 next header).
	Proto    uint8
	HasProto bool
}

// Error is the error Parse reports for a flag value it cannot use.
type Error struct {
	// Flag is the flag's name: "--filter-port", "--filter-ip" or
	// "--filter-protocol".
	Flag string
	// Value is the value as given.
	Value string
	// Reason says what the value should have been, e.g. "is not a port
	// (1-65535)".
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %q %s", e.Flag, e.Value, e.Reason)
}

// Parse validates the values of the three filter flags and returns the Spec
// they describe; an empty string leaves that filter unset. port is a decimal
// port 1-65535. ip is an IPv4 or IPv6 address or CIDR prefix (host bits of a
// prefix are dropped: 10.1.2.3/8 means 10.0.0.0/8; zones are refused). proto
// is tcp, udp, icmp, icmpv6 (or icmp6) or sctp in any case, or a protocol
// number 0-255. Surrounding white space is ignored. Every bad value is
// reported, each as an *Error; errors.As finds the first.
func Parse(port, ip, proto string) (Spec, error) {
	var s Spec
	var errs []error
	if v := strings.TrimSpace(port); v != "" {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			errs = append(errs, &Error{Flag: "--filter-port", Value: port, Reason: "is not a port (1-65535)"})
		} else {
			s.Port, s.HasPort = uint16(n), true
		}
	}
	if v := strings.TrimSpace(ip); v != "" {
		p, err := parsePrefix(v)
		if err != nil {
			errs = append(errs, &Error{Flag: "--filter-ip", Value: ip, Reason: err.Error()})
		} else {
			s.Prefix, s.HasIP = p, true
		}
	}
	if v := strings.TrimSpace(proto); v != "" {
		n, ok := parseProto(v)
		if !ok {
			errs = append(errs, &Error{Flag: "--filter-protocol", Value: proto,
				Reason: "is not a protocol (tcp, udp, icmp, icmpv6, sctp or a number 0-255)"})
		} else {
			s.Proto, s.HasProto = n, true
		}
	}
	if len(errs) > 0 {
		return Spec{}, errors.Join(errs...)
	}
	return s, nil
}

// parsePrefix parses an address or CIDR prefix, masked to its length.
func parsePrefix(v string) (netip.Prefix, error) {
	const reason = "is not an IPv4 or IPv6 address or CIDR prefix"
	if strings.Contains(v, "%") {
		return netip.Prefix{}, errors.New(reason + " (zones are not allowed)")
	}
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, errors.New(reason)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, errors.New(reason)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// protoNames maps the names Parse accepts to protocol numbers.
var protoNames = map[string]uint8{
	"tcp":    protoTCP,
	"udp":    protoUDP,
	"icmp":   protoICMP,
	"icmpv6": protoICMPv6,
	"icmp6":  protoICMPv6,
	"sctp":   protoSCTP,
}

func parseProto(v string) (uint8, bool) {
	if n, ok := protoNames[strings.ToLower(v)]; ok {
		return n, true
	}
	n, err := strconv.ParseUint(v, 10, 8)
	if err != nil {
		return 0, false
	}
	return uint8(n), true
}

// IsEmpty reports whether s filters nothing: no filter is set.
func (s Spec) IsEmpty() bool {
	return !s.HasPort && !s.HasIP && !s.HasProto
}

// String describes s in tcpdump-like words, e.g. "port 53 and net
// 10.0.0.0/8 and proto udp" ("host 10.0.0.1" for a single address). It is
// "" for an empty Spec.
func (s Spec) String() string {
	var parts []string
	if s.HasPort {
		parts = append(parts, "port "+strconv.Itoa(int(s.Port)))
	}
	if s.HasIP {
		p := s.Prefix.Masked()
		switch {
		case !p.IsValid():
			parts = append(parts, "net invalid")
		case p.IsSingleIP():
			parts = append(parts, "host "+p.Addr().String())
		default:
			parts = append(parts, "net "+p.String())
		}
	}
	if s.HasProto {
		parts = append(parts, "proto "+protoName(s.Proto))
	}
	return strings.Join(parts, " and ")
}

func protoName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoICMP:
		return "icmp"
	case protoICMPv6:
		return "icmpv6"
	case protoSCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// isPortProto reports whether IP protocol p has 16-bit source and
// destination ports at the start of its header, as libpcap's "port" assumes.
func isPortProto(p uint8) bool {
	return p == protoTCP || p == protoUDP || p == protoSCTP
}

// wantIPv4 and wantIPv6 report whether an IPv4 (IPv6) packet can match s at
// all: an address filter of the other family rules it out.
func (s Spec) wantIPv4() bool { return !s.HasIP || s.Prefix.Addr().Is4() }
func (s Spec) wantIPv6() bool { return !s.HasIP || s.Prefix.Addr().Is6() }

// FromConfig parses the filter settings of cfg, as Parse does, with each
// bad value reported against its setting and where it was given (the
// flag, the environment variable, or the config file's line).
func FromConfig(cfg *config.Config) (Spec, error) {
	s, err := Parse(cfg.FilterPort, cfg.FilterIP, cfg.FilterProtocol)
	if err == nil {
		return s, nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for i, e := range errs {
		var fe *Error
		if errors.As(e, &fe) {
			key := strings.ReplaceAll(strings.TrimPrefix(fe.Flag, "--"), "-", "_")
			errs[i] = cfg.Errorf(key, "%q %s", fe.Value, fe.Reason)
		}
	}
	return Spec{}, errors.Join(errs...)
}
