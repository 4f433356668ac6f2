package capture

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"golang.org/x/net/bpf"
)

// drainLimit bounds the wait for frames that arrived before the filter.
const drainLimit = 2 * time.Second

// OpenLive opens an AF_PACKET socket with a TPACKET_V3 ring on
// cfg.Interface, in the calling thread's network namespace, and attaches
// cfg.Filter in the kernel.
//
// No frame that arrived before the filter was attached is ever returned or
// counted: the socket is bound before any program can be attached, so
// OpenLive first attaches a program that rejects everything, reads and
// discards what reached the ring meanwhile (waiting out the ring's block
// timeout), takes the kernel's counters as the zero of Stats, and only
// then attaches the real program. This costs twice the ring's block
// timeout (80 ms) rounded up to a whole PollTimeout: 200 ms by default.
//
// It needs CAP_NET_RAW; without it the error wraps syscall.EPERM and says
// so: "open AF_PACKET socket: operation not permitted (needs CAP_NET_RAW)".
// An unknown interface gives an *InterfaceNotFoundError listing the
// namespace's interfaces.
//
// Info.LinkType is LiveLinkType(cfg.Interface). Info.VLAN is the VLAN ID
// of the (outer) 802.1Q or 802.1ad tag the kernel took off an Ethernet
// frame, reported out of band by the ring, or -1; the frame's bytes no
// longer hold that tag, but Info.Length counts it, as tcpdump does: it is
// the frame's length on the wire. For link type 101 (SOCK_DGRAM) the
// frame starts at the IP header and Info.Length is the IP packet's
// length.
func OpenLive(cfg LiveConfig) (Source, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("live capture: %w", err)
	}
	setup, err := setupFor(cfg.Interface)
	if err != nil {
		return nil, err
	}
	prog, err := kernelProgram(cfg.Filter, uint32(cfg.Snaplen), setup.guards)
	if err != nil {
		return nil, err
	}

	blockSize, numBlocks, err := ringGeometry(cfg.RingBytes, cfg.Snaplen, os.Getpagesize())
	if err != nil {
		return nil, fmt.Errorf("live capture: %w", err)
	}
	opts := []any{
		afpacket.OptInterface(setup.ifname),
		afpacket.OptTPacketVersion(afpacket.TPacketVersion3),
		afpacket.OptBlockSize(blockSize),
		afpacket.OptNumBlocks(numBlocks),
		// TPACKET_V3 packs frames of any size into blocks; the frame size
		// only has to divide the block size.
		afpacket.OptFrameSize(os.Getpagesize()),
		afpacket.OptBlockTimeout(blockTimeout),
		afpacket.OptPollTimeout(cfg.PollTimeout),
	}
	if setup.dgram {
		opts = append(opts, afpacket.OptSocketType(afpacket.SocketDgram))
	}
	tp, err := afpacket.NewTPacket(opts...)
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("open AF_PACKET socket: %w (needs CAP_NET_RAW)", err)
		}
		return nil, fmt.Errorf("open AF_PACKET socket on %s (ring of %d blocks of %d KiB): %w",
			cfg.Interface, numBlocks, blockSize>>10, err)
	}
	s := &liveSource{tp: tp, linkType: setup.linkType, dgram: setup.dgram}
	if err := s.start(cfg, prog); err != nil {
		tp.Close()
		return nil, err
	}
	return s, nil
}

// start attaches the filter without letting earlier frames through (see
// OpenLive) and turns on promiscuous mode if asked.
func (s *liveSource) start(cfg LiveConfig, prog []bpf.RawInstruction) error {
	if err := s.tp.SetBPF(dropAll); err != nil {
		return fmt.Errorf("attach BPF filter: %w", err)
	}
	begin := time.Now()
	for {
		_, _, err := s.tp.ZeroCopyReadPacketData()
		if errors.Is(err, afpacket.ErrTimeout) {
			// A block holding frames is handed over at the latest after
			// the block timeout; two of them leave room for timer slack.
			if time.Since(begin) >= 2*blockTimeout {
				break
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("drain ring: %w", err)
		}
		s.drained++
		if time.Since(begin) > drainLimit {
			break // cannot happen with everything rejected; bounded anyway
		}
	}
	// The kernel counted the frames just drained: what it reports now is
	// Stats' zero.
	if _, err := s.update(); err != nil {
		return err
	}
	s.stats = Stats{}
	if cfg.Promiscuous {
		if err := s.tp.SetPromiscuous(true); err != nil {
			return fmt.Errorf("enable promiscuous mode on %s: %w", cfg.Interface, err)
		}
	}
	if err := s.tp.SetBPF(prog); err != nil {
		return fmt.Errorf("attach BPF filter (%d instructions): %w", len(prog), err)
	}
	return nil
}

// liveSource reads an AF_PACKET ring.
type liveSource struct {
	tp       *afpacket.TPacket
	linkType uint16
	closed   atomic.Bool // set by Close, read by ReadPacket (same goroutine)
	drained  int         // frames discarded before the filter was attached
	dgram    bool        // SOCK_DGRAM: frames start at the network header

	mu sync.Mutex // guards the fields below; Stats may run on any goroutine
	// afpacket adds each PACKET_STATISTICS reading (which resets the
	// kernel's counters) to 32-bit totals; lastPackets and lastDrops are
	// those totals at the previous reading, and stats the 64-bit sums of
	// the differences since the filter was attached.
	lastPackets, lastDrops uint32
	stats                  Stats
	done                   bool // Close has run: stats are final
}

// ReadPacket returns the next frame, which stays valid until the next
// call: it is in the ring, handed back to the kernel then.
func (s *liveSource) ReadPacket() ([]byte, Info, error) {
	if s.closed.Load() {
		return nil, Info{}, ErrClosed
	}
	data, ci, err := s.tp.ZeroCopyReadPacketData()
	if err != nil {
		if errors.Is(err, afpacket.ErrTimeout) {
			return nil, Info{}, ErrTimeout
		}
		return nil, Info{}, fmt.Errorf("read AF_PACKET ring: %w", err)
	}
	vlan, length := -1, ci.Length
	for _, a := range ci.AncillaryData {
		if v, ok := a.(afpacket.AncillaryVLAN); ok {
			vlan = v.VLAN
			if !s.dgram {
				// The kernel took the 4-byte tag out of the frame and
				// out of tp_len; on the wire it was there, and libpcap
				// puts it back (len += VLAN_TAG_LEN), so tcpdump counts
				// it too.
				length += 4
			}
		}
	}
	return data, Info{
		Timestamp:     ci.Timestamp.UTC(),
		Length:        length,
		CaptureLength: ci.CaptureLength,
		LinkType:      s.linkType,
		VLAN:          vlan,
	}, nil
}

// Stats returns the kernel's counters since the filter was attached. It is
// safe to call from another goroutine than ReadPacket's, and after Close
// (the counters as they were at Close). Call it at least once per 2^32
// frames, as afpacket keeps 32-bit totals.
func (s *liveSource) Stats() (Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return s.stats, nil
	}
	return s.update()
}

// update reads PACKET_STATISTICS; s.mu is held (or s is not shared yet).
func (s *liveSource) update() (Stats, error) {
	_, v3, err := s.tp.SocketStats()
	if err != nil {
		return s.stats, fmt.Errorf("read AF_PACKET statistics: %w", err)
	}
	packets, drops := uint32(v3.Packets()), uint32(v3.Drops())
	s.stats.Received += uint64(packets - s.lastPackets)
	s.stats.Dropped += uint64(drops - s.lastDrops)
	s.lastPackets, s.lastDrops = packets, drops
	return s.stats, nil
}

// Close reads the counters a last time, then closes the socket and unmaps
// the ring. It must not run while ReadPacket runs.
func (s *liveSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil
	}
	_, err := s.update()
	s.done = true
	s.closed.Store(true)
	s.tp.Close()
	return err
}
