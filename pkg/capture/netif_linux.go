package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Hardware types (ARPHRD_*, linux/if_arp.h) of interfaces whose frames
// start with an Ethernet header.
const (
	arphrdEther    = 1
	arphrdLoopback = 772
)

// netInterface is one interface of the current network namespace.
type netInterface struct {
	name   string
	index  int
	arphrd uint16 // hardware type, ARPHRD_*
	flags  uint32 // IFF_*
}

// interfaces lists the interfaces of the calling thread's network
// namespace, in index order, with their hardware types. It asks the kernel
// over rtnetlink (RTM_GETLINK), as ip(8) and package net do: the answer
// follows the namespace of the thread, where /sys/class/net shows the
// namespace sysfs was mounted in (wrong after setns(2), or in a container
// with the host's /sys).
func interfaces() ([]netInterface, error) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", os.NewSyscallError("netlinkrib", err))
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", os.NewSyscallError("parsenetlinkmessage", err))
	}
	var out []netInterface
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != syscall.RTM_NEWLINK || len(m.Data) < syscall.SizeofIfInfomsg {
			continue
		}
		// struct ifinfomsg: family u8, pad u8, type u16, index i32,
		// flags u32, change u32, in host byte order.
		ifi := netInterface{
			arphrd: binary.NativeEndian.Uint16(m.Data[2:4]),
			index:  int(int32(binary.NativeEndian.Uint32(m.Data[4:8]))),
			flags:  binary.NativeEndian.Uint32(m.Data[8:12]),
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", os.NewSyscallError("parsenetlinkrouteattr", err))
		}
		for _, a := range attrs {
			if a.Attr.Type == syscall.IFLA_IFNAME {
				ifi.name = strings.TrimRight(string(a.Value), "\x00")
			}
		}
		out = append(out, ifi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].index < out[j].index })
	return out, nil
}

// liveSetup is how a live source reads an interface.
type liveSetup struct {
	ifname   string // "" binds to every interface (ifindex 0)
	linkType uint16
	dgram    bool // SOCK_DGRAM: frames start at the network header
	guards   programGuards
}

// setupFor decides the socket type and link type for iface in the calling
// thread's namespace: SOCK_RAW and Ethernet for Ethernet-like interfaces
// and the loopback; SOCK_DGRAM and raw IP (101) for "any" and for every
// other hardware type (tun and WireGuard are ARPHRD_NONE, with no link
// header at all).
func setupFor(iface string) (liveSetup, error) {
	ifs, err := interfaces()
	if err != nil {
		return liveSetup{}, err
	}
	if iface == AnyInterface {
		s := liveSetup{linkType: LinkTypeRaw, dgram: true}
		s.guards.ipOnly = true
		for _, ifi := range ifs {
			if ifi.flags&syscall.IFF_LOOPBACK != 0 {
				s.guards.loopbackIndex = ifi.index
			}
		}
		return s, nil
	}
	for _, ifi := range ifs {
		if ifi.name != iface {
			continue
		}
		s := liveSetup{ifname: iface}
		switch ifi.arphrd {
		case arphrdEther, arphrdLoopback:
			s.linkType = LinkTypeEthernet
		default:
			s.linkType, s.dgram = LinkTypeRaw, true
			s.guards.ipOnly = true
		}
		if ifi.flags&syscall.IFF_LOOPBACK != 0 {
			s.guards.loopbackIndex = ifi.index
		}
		return s, nil
	}
	names := make([]string, len(ifs))
	for i, ifi := range ifs {
		names[i] = ifi.name
	}
	return liveSetup{}, &InterfaceNotFoundError{Name: iface, Available: names}
}

// LiveLinkType returns the link type OpenLive reports for iface in the
// calling thread's network namespace: LinkTypeRaw for "any" and for
// interfaces without an Ethernet header, LinkTypeEthernet otherwise
// (including when iface does not exist: OpenLive then reports that). A
// filter for OpenLive is compiled for this link type.
func LiveLinkType(iface string) uint16 {
	s, err := setupFor(iface)
	if err != nil {
		return LinkTypeEthernet
	}
	return s.linkType
}

// DefaultInterface picks the interface to capture on when none is given:
// the interface of the IPv4 default route (the one with the lowest
// metric), else that of the IPv6 default route, else the first interface
// that is up, is not a loopback and has an address other than a link-local
// one. Routes are read from /proc/thread-self/net, the calling thread's
// namespace.
func DefaultInterface() (string, error) {
	if name, err := defaultRouteV4(); err == nil && name != "" {
		return name, nil
	}
	if name, err := defaultRouteV6(); err == nil && name != "" {
		return name, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("detect interface: %w", err)
	}
	var names []string
	for _, ifc := range ifs {
		names = append(names, ifc.Name)
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
				return ifc.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no default route and no interface that is up, not a loopback and has an address (interfaces: %s)",
		strings.Join(names, ", "))
}

// procNet opens a file of /proc/thread-self/net, or of /proc/net before
// Linux 3.17.
func procNet(name string) (*os.File, error) {
	f, err := os.Open("/proc/thread-self/net/" + name)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.Open("/proc/net/" + name)
	}
	return f, err
}

// defaultRouteV4 reads /proc/net/route: Iface Destination Gateway Flags
// RefCnt Use Metric Mask ..., addresses in hex.
func defaultRouteV4() (string, error) {
	f, err := procNet("route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	const rtfUp = 0x1
	best, bestMetric := "", uint64(1<<64-1)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 || fl[1] != "00000000" || fl[7] != "00000000" {
			continue
		}
		flags, err1 := strconv.ParseUint(fl[3], 16, 32)
		metric, err2 := strconv.ParseUint(fl[6], 10, 64)
		if err1 != nil || err2 != nil || flags&rtfUp == 0 {
			continue
		}
		if metric < bestMetric {
			best, bestMetric = fl[0], metric
		}
	}
	return best, sc.Err()
}

// defaultRouteV6 reads /proc/net/ipv6_route: destination, prefix length,
// source, prefix length, next hop, metric, refcount, use, flags, device
// (hex). The kernel's "unreachable" default routes on lo are skipped.
func defaultRouteV6() (string, error) {
	f, err := procNet("ipv6_route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	const (
		rtfUp     = 0x1
		rtfReject = 0x200
	)
	best, bestMetric := "", uint64(1<<64-1)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 || fl[0] != strings.Repeat("0", 32) || fl[1] != "00" || fl[9] == "lo" {
			continue
		}
		metric, err1 := strconv.ParseUint(fl[5], 16, 64)
		flags, err2 := strconv.ParseUint(fl[8], 16, 32)
		if err1 != nil || err2 != nil || flags&rtfUp == 0 || flags&rtfReject != 0 {
			continue
		}
		if metric < bestMetric {
			best, bestMetric = fl[9], metric
		}
	}
	return best, sc.Err()
}
