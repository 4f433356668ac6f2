package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/bpf"
)

// Defaults and bounds of LiveConfig.
const (
	// DefaultRingBytes is the ring's size: its pages are kernel memory
	// mapped into the process (never swapped) and count against the
	// process's 20 MiB budget.
	DefaultRingBytes = 2 << 20
	MinRingBytes     = 64 << 10
	MaxRingBytes     = 256 << 20

	// DefaultPollTimeout is how long ReadPacket waits for a packet before
	// it returns ErrTimeout.
	DefaultPollTimeout = 100 * time.Millisecond

	// AnyInterface captures on every interface of the namespace, as
	// tcpdump -i any does.
	AnyInterface = "any"

	// blockTimeout is how long the kernel keeps a partly filled ring
	// block before handing it over (tp_retire_blk_tov): the longest a
	// frame waits in the ring on a quiet link. It grew with the block
	// size (see ringGeometry) and stays under DefaultPollTimeout, so that
	// a poll timeout without a frame means that the ring is empty.
	blockTimeout = 80 * time.Millisecond

	// Ring blocks (see ringGeometry): ringBlockSize is the block size
	// of rings of at least ringBlocks × ringBlockSize bytes; smaller
	// rings get smaller blocks, down to minRingBlockSize.
	ringBlockSize    = 128 << 10
	ringBlocks       = 16
	minRingBlockSize = 32 << 10
)

// Link types a live source reports (LINKTYPE_* values).
const (
	// LinkTypeEthernet: frames start with an Ethernet header (Ethernet,
	// veth, bridges, and Linux's loopback, whose header has zero MACs).
	LinkTypeEthernet uint16 = 1
	// LinkTypeRaw: frames start with the IPv4 or IPv6 header. Used for
	// "any" and for interfaces without an Ethernet header (tun,
	// WireGuard, GRE, PPP), read with a SOCK_DGRAM socket.
	LinkTypeRaw uint16 = 101
)

// LiveConfig configures OpenLive. The zero value of every field but
// Interface selects its default.
type LiveConfig struct {
	// Interface is the interface name, or "any" for all interfaces of the
	// network namespace. Required (see DefaultInterface).
	Interface string
	// Snaplen is how many bytes of each frame are kept: 1 to 262144,
	// default DefaultSnaplen (256: the headers are all the flow engine
	// reads). Info.Length still reports the whole frame's length.
	Snaplen int
	// RingBytes is the total size of the TPACKET_V3 ring, between
	// MinRingBytes and MaxRingBytes, default DefaultRingBytes. It is
	// rounded down to whole blocks (16 of 128 KiB by default; see
	// ringGeometry) and must hold at least two.
	RingBytes int
	// Promiscuous asks the interface for frames not addressed to it
	// (PACKET_ADD_MEMBERSHIP, undone when the socket closes). Off by
	// default: a sidecar needs only its own namespace's traffic. Not
	// possible with "any".
	Promiscuous bool
	// PollTimeout is how long ReadPacket waits before it returns
	// ErrTimeout, so that the caller can check its context: 1 ms to 1 s,
	// default DefaultPollTimeout. On a quiet link a frame waits in the
	// ring for up to 80 ms (its block timeout): with a shorter
	// PollTimeout, ErrTimeout does not mean that the ring is empty.
	// OpenLive itself waits 160 ms rounded up to a whole PollTimeout
	// (200 ms by default).
	PollTimeout time.Duration
	// Filter is a classic BPF program (golang.org/x/net/bpf) run by the
	// kernel on each frame, from its first byte in the link type
	// LiveLinkType reports (the IP header for LinkTypeRaw). Nil accepts
	// every frame. Frames it rejects are neither copied nor counted in
	// Stats. Whatever it returns is capped at Snaplen.
	Filter []bpf.RawInstruction
}

// withDefaults returns c with defaults filled in, or an error naming the
// first bad field.
func (c LiveConfig) withDefaults() (LiveConfig, error) {
	if c.Interface == "" {
		return c, errors.New("no interface given")
	}
	if c.Snaplen == 0 {
		c.Snaplen = DefaultSnaplen
	}
	if c.Snaplen < 1 || c.Snaplen > maxSnaplen {
		return c, fmt.Errorf("snaplen %d is out of range (1 to %d bytes)", c.Snaplen, maxSnaplen)
	}
	if c.RingBytes == 0 {
		c.RingBytes = DefaultRingBytes
	}
	if c.RingBytes < MinRingBytes || c.RingBytes > MaxRingBytes {
		return c, fmt.Errorf("ring size %d bytes is out of range (%d KiB to %d MiB)", c.RingBytes, MinRingBytes>>10, MaxRingBytes>>20)
	}
	if c.PollTimeout == 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.PollTimeout < time.Millisecond || c.PollTimeout > time.Second {
		return c, fmt.Errorf("poll timeout %v is out of range (1ms to 1s)", c.PollTimeout)
	}
	if c.Promiscuous && c.Interface == AnyInterface {
		return c, errors.New(`promiscuous mode needs a named interface, not "any"`)
	}
	return c, nil
}

// ringGeometry splits ringBytes into TPACKET_V3 blocks.
//
// The reader sleeps in poll(2) until the kernel hands a block over, when
// it is full or its block timeout has passed, so a busy link costs one
// wakeup per block: with snaplen 256 a 128 KiB block holds about 370
// frames, a 32 KiB one 93. Measured with tcpreplay at about 470k
// packets/s onto a veth (bench, BenchmarkLive; medians of 3), 16 blocks
// of 128 KiB instead of 64 of 32 KiB cut the capturer's voluntary context
// switches from 32k to 15k per 2M packets, its system time from 200 to
// 65 ms and its CPU from 0.39 to 0.33 s per million packets; reading the
// ring alone costs half as much (0.27 to 0.14 s per million packets at
// top speed, 0.40 to 0.19 at 100k packets/s).
//
// On a quiet link each block holds a block timeout's worth of frames
// however large it is, so a reader that stalls falls behind by about
// numBlocks × block timeout before frames are dropped: 16 × 80 ms = 1.28 s
// with the defaults, as with the 64 blocks of 32 KiB and 20 ms used
// before (the block timeout grew with the block). Stalling a reader under
// pings on lo, the default ring held 0.8 to 1.2 s of 100 to 290 frames/s
// (0.8 to 1.3 s before) and 1.0 s of 60 frames/s (over 1.5 s before:
// below one frame per block timeout, 64 blocks outlast 16). On a busy
// link the ring's bytes are what count, whatever the blocks.
//
// A block is ringBlockSize, or smaller (down to minRingBlockSize) so
// that a ring under ringBlocks × ringBlockSize still has ringBlocks
// blocks; then larger so that one frame of snaplen bytes and the ring's
// headers fit, or so that there are at most 1024 blocks; in whole pages.
// It fails when ringBytes holds fewer than two blocks. (libpcap, for
// comparison, always uses 256 KiB blocks, 8 in tcpdump's 2 MiB, and a
// block timeout of a whole second: tcpdump's read timeout.)
func ringGeometry(ringBytes, snaplen, pageSize int) (blockSize, numBlocks int, err error) {
	blockSize = ringBlockSize
	for blockSize > minRingBlockSize && ringBytes/blockSize < ringBlocks {
		blockSize /= 2
	}
	for blockSize < snaplen+512 || ringBytes/blockSize > 1024 {
		blockSize *= 2
	}
	blockSize = (blockSize + pageSize - 1) / pageSize * pageSize
	numBlocks = ringBytes / blockSize
	if numBlocks < 2 {
		return 0, 0, fmt.Errorf("ring size %d bytes is too small for snaplen %d: it needs at least two blocks of %d KiB",
			ringBytes, snaplen, blockSize>>10)
	}
	return blockSize, numBlocks, nil
}

// InterfaceNotFoundError is returned by OpenLive for an interface that
// does not exist in the namespace.
type InterfaceNotFoundError struct {
	Name      string
	Available []string // the namespace's interfaces, in index order
}

func (e *InterfaceNotFoundError) Error() string {
	return fmt.Sprintf("interface %q not found (available: %s)", e.Name, strings.Join(e.Available, ", "))
}

// InterfaceAddrs returns the addresses configured on the named interface,
// or on every interface of the namespace for "any" (loopback included), so
// that flows can be told inbound, outbound or internal. IPv4 addresses are
// plain 4-byte addresses, never IPv4-mapped IPv6.
func InterfaceAddrs(iface string) ([]netip.Addr, error) {
	var addrs []net.Addr
	var err error
	if iface == AnyInterface {
		addrs, err = net.InterfaceAddrs()
	} else {
		var ifc *net.Interface
		ifc, err = net.InterfaceByName(iface)
		if err == nil {
			addrs, err = ifc.Addrs()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", iface, err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, addr.Unmap())
		}
	}
	return out, nil
}
