// Package capture owns packet sources: the live AF_PACKET TPACKET_V3 ring
// (Linux) and pcap/pcapng files or standard input. A Source hands out frames
// without copying; it knows nothing of decoding or flows, and never logs.
//
// Files: OpenFile and OpenReader read classic pcap (microsecond and
// nanosecond, either byte order) and pcapng (any time stamp resolution,
// sections in either byte order, each packet reporting the link type of the
// interface it came on), possibly gzip-compressed, with readers of this
// package that return frames straight out of their read buffer.
//
// Live: OpenLive opens an AF_PACKET TPACKET_V3 ring (Linux only) with a
// classic BPF program attached in the kernel, so that frames the filter
// rejects are neither copied nor counted.
//
// This package imports gopacket's afpacket, golang.org/x/net/bpf and
// golang.org/x/sys; it must not import decode, flow or anything above, nor
// gopacket's layers (whose tables cost the capturer about 1.5 MiB of RSS):
// pcapgo and layers serve only as test oracles.
package capture

import (
	"errors"
	"time"
)

// DefaultSnaplen is the number of bytes a live source keeps of each frame
// unless told otherwise: enough for the link, IP and transport headers,
// which is all the flow engine reads. Byte counts always use the original
// length (Info.Length), never the captured one.
const DefaultSnaplen = 256

// ErrTimeout is returned by ReadPacket when a live source saw no packet
// within its poll timeout. It lets the read loop check its context; it is
// not a failure.
var ErrTimeout = errors.New("capture: poll timeout")

// ErrNotCapture is wrapped by OpenFile and OpenReader when the input is
// neither a pcap nor a pcapng file (nor a gzip-compressed one). The message
// names the magic number found, e.g.
// "not a pcap or pcapng file (magic 0x7b0a2020)".
var ErrNotCapture = errors.New("not a pcap or pcapng file")

// ErrClosed is returned by ReadPacket after Close.
var ErrClosed = errors.New("capture: source closed")

// Info describes one frame.
type Info struct {
	// Timestamp is the capture time the source recorded, in UTC, to the
	// nanosecond. A pcapng Simple Packet Block records no time: its
	// packets have the Unix epoch, never the zero time.Time.
	Timestamp time.Time
	// Length is the frame's original length on the wire (the pcap
	// record's "len"; live, including a VLAN tag the kernel took off);
	// CaptureLength is len(data), the bytes captured (at most the snapshot
	// length). A damaged file can have CaptureLength > Length: both are
	// reported as recorded, as tshark and tcpdump do.
	Length        int
	CaptureLength int
	// LinkType is the frame's link type (LINKTYPE_* value, low 16 bits of
	// the file's field). pcapng files may change it per interface.
	LinkType uint16
	// VLAN is the 802.1Q VLAN ID the kernel took off the frame (live
	// capture reports it from the ring's ancillary data), or -1. Files
	// always report -1: their frames keep their tags.
	VLAN int
}

// Stats are a source's cumulative counters since it was opened.
type Stats struct {
	// Received and Dropped are the kernel's counters for a live socket
	// (PACKET_STATISTICS, accumulated here because reading them resets the
	// kernel's), counted from the moment the source's filter was attached.
	// Received counts the frames that passed the socket filter, including
	// the Dropped ones that found no room in the ring: tcpdump's "packets
	// received by filter" and "packets dropped by kernel". Frames the
	// filter rejects are counted nowhere. Files report zero.
	Received uint64
	Dropped  uint64
}

// Source is a stream of frames.
//
// ReadPacket returns the next frame. The returned slice is owned by the
// Source and valid only until the next call to ReadPacket or Close; callers
// copy what they keep. At the end of a file it returns io.EOF; a live source
// returns ErrTimeout when its poll timeout passes without a packet.
//
// A Source is not safe for concurrent use, except that Stats may be called
// from another goroutine.
type Source interface {
	ReadPacket() (data []byte, info Info, err error)
	Stats() (Stats, error)
	Close() error
}
