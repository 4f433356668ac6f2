package decode

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"
)

// frame is one record of a capture file.
type frame struct {
	num      int // 1-based, as tshark numbers frames
	data     []byte
	linkType uint16
	length   uint32
}

// findCorpusDir returns ../shared/pcaps/<sub> beside the module root (found
// by walking up to go.mod), if it is there.
func findCorpusDir(sub string) (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "pcaps", sub)
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		return p, false
	}
	return p, true
}

// corpusDir returns the shared corpus folder sub, or skips the test when
// it is not there.
func corpusDir(tb testing.TB, sub string) string {
	tb.Helper()
	p, ok := findCorpusDir(sub)
	if !ok {
		tb.Skipf("shared capture corpus not found at %s", p)
	}
	return p
}

// captureFiles lists the pcap and pcapng files of dir, sorted.
func captureFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	var files []string
	for _, pat := range []string{"*.pcap", "*.pcapng"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			tb.Fatal(err)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		tb.Skipf("no capture files in %s", dir)
	}
	return files
}

// readCapture reads every frame of a pcap or pcapng file. It returns the
// frames read before any error, and the error (io.EOF is not one). The link
// type is the low 16 bits of the file's (or the pcapng interface's) value.
func readCapture(path string) ([]frame, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var frames []frame
	if len(raw) >= 4 && binary.BigEndian.Uint32(raw) == 0x0a0d0d0a {
		r, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, err
		}
		for {
			data, ci, err := r.ReadPacketData()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				return frames, err
			}
			intf, err := r.Interface(ci.InterfaceIndex)
			if err != nil {
				return frames, err
			}
			frames = append(frames, frame{num: len(frames) + 1, data: data, linkType: uint16(intf.LinkType), length: uint32(ci.Length)})
		}
	}
	return readPcap(raw)
}

// readPcap reads a classic pcap file with pcapgo.
func readPcap(raw []byte) ([]frame, error) {
	var frames []frame
	r, err := pcapgo.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, err
	}
	lt := uint16(r.LinkType())
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return frames, err
		}
		frames = append(frames, frame{num: len(frames) + 1, data: data, linkType: lt, length: uint32(ci.Length)})
	}
}

// readPcapLenient reads the records of a classic pcap file without the
// checks pcapgo makes (capture length above the snapshot length or the
// original length), so that the robustness test also decodes the frames a
// stricter reader refuses. It stops at the first record that does not fit
// in the file.
func readPcapLenient(raw []byte) []frame {
	if len(raw) < 24 {
		return nil
	}
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(raw) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil
	}
	lt := uint16(order.Uint32(raw[20:]))
	var frames []frame
	for b := raw[24:]; len(b) >= 16; {
		n, length := order.Uint32(b[8:]), order.Uint32(b[12:])
		if uint64(n) > uint64(len(b)-16) {
			break
		}
		frames = append(frames, frame{num: len(frames) + 1, data: b[16 : 16+n : 16+n], linkType: lt, length: length})
		b = b[16+n:]
	}
	return frames
}

// checkPacket reports a Packet that breaks what Decode promises for a frame
// of len(data) bytes and wire length length decoding to res.
func checkPacket(tb testing.TB, what string, data []byte, length uint32, p *Packet, res Result) {
	tb.Helper()
	if res >= numResults {
		tb.Errorf("%s: result %d out of range", what, res)
	}
	if p.CapLen != uint32(len(data)) || p.Length != length {
		tb.Errorf("%s: CapLen, Length = %d, %d, want %d, %d", what, p.CapLen, p.Length, len(data), length)
	}
	if p.Tunnels > MaxTunnels {
		tb.Errorf("%s: Tunnels = %d > %d", what, p.Tunnels, MaxTunnels)
	}
	if res != OK {
		return
	}
	if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != p.Dst.Is4() {
		tb.Errorf("%s: OK with addresses %v -> %v", what, p.Src, p.Dst)
	}
	if p.HasPorts {
		switch p.Proto {
		case ProtoTCP, ProtoUDP, ProtoSCTP, ProtoICMP, ProtoICMPv6:
		default:
			tb.Errorf("%s: ports with protocol %d", what, p.Proto)
		}
	} else if p.SrcPort != 0 || p.DstPort != 0 {
		tb.Errorf("%s: ports %d, %d without HasPorts", what, p.SrcPort, p.DstPort)
	}
	if p.Proto != ProtoTCP && (p.TCPFlags != 0 || p.Seq != 0 || p.Ack != 0 || p.Window != 0) {
		tb.Errorf("%s: TCP fields on protocol %d", what, p.Proto)
	}
	switch p.Frag {
	case NotFragment:
	case FirstFragment, LaterFragment:
		k := p.FragKey
		if !k.Src.IsValid() || !k.Dst.IsValid() || k.Src.Is4() != k.Dst.Is4() {
			tb.Errorf("%s: fragment key %+v", what, k)
		}
		if p.Frag == LaterFragment && p.HasPorts {
			tb.Errorf("%s: later fragment with ports", what)
		}
	default:
		tb.Errorf("%s: Frag = %d", what, p.Frag)
	}
	if p.Frag == NotFragment && p.FragKey != (FragKey{}) {
		tb.Errorf("%s: fragment key %+v on a whole datagram", what, p.FragKey)
	}
}

// Frame builders for the hand-made tests. Every builder returns a new slice.

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func addr(s string) []byte { return netip.MustParseAddr(s).AsSlice() }

// eth is an Ethernet II header of type et followed by payload.
func eth(et uint16, payload []byte) []byte {
	return cat([]byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2}, u16(et), payload)
}

// tag is an 802.1Q-style tag (TCI with VID vid) followed by type et.
func tag(vid, et uint16) []byte { return cat(u16(vid&0x0fff|0x2000), u16(et)) }

// ip4 describes an IPv4 header.
type ip4 struct {
	src, dst string
	proto    uint8
	id       uint16
	frag     uint16 // flags and fragment offset (in 8-byte units)
	opts     []byte // a multiple of 4 bytes
	total    int    // total length; 0: computed, -1: written as 0
	ihl      int    // header length in words; 0: computed
}

func (h ip4) with(payload []byte) []byte {
	hl := 20 + len(h.opts)
	ihl := hl / 4
	if h.ihl != 0 {
		ihl = h.ihl
	}
	total := hl + len(payload)
	switch {
	case h.total > 0:
		total = h.total
	case h.total < 0:
		total = 0
	}
	src, dst := h.src, h.dst
	if src == "" {
		src, dst = "192.0.2.1", "198.51.100.2"
	}
	b := []byte{0x40 | byte(ihl), 0}
	b = append(b, u16(uint16(total))...)
	b = append(b, u16(h.id)...)
	b = append(b, u16(h.frag)...)
	b = append(b, 64, h.proto, 0, 0)
	b = append(b, addr(src)...)
	b = append(b, addr(dst)...)
	b = append(b, h.opts...)
	return append(b, payload...)
}

// ip6 describes an IPv6 header.
type ip6 struct {
	src, dst string
	next     uint8
	plen     int // payload length; 0: computed, -1: written as 0
}

func (h ip6) with(payload []byte) []byte {
	plen := len(payload)
	switch {
	case h.plen > 0:
		plen = h.plen
	case h.plen < 0:
		plen = 0
	}
	src, dst := h.src, h.dst
	if src == "" {
		src, dst = "2001:db8::1", "2001:db8::2"
	}
	b := []byte{0x60, 0, 0, 0}
	b = append(b, u16(uint16(plen))...)
	b = append(b, h.next, 64)
	b = append(b, addr(src)...)
	b = append(b, addr(dst)...)
	return append(b, payload...)
}

// ext6 is an IPv6 extension header in 8-byte units (hop-by-hop, routing,
// destination options) whose body follows the two first bytes, padded.
func ext6(next uint8, body []byte) []byte {
	n := 2 + len(body)
	for n%8 != 0 {
		body = append(body, 0) // Pad1 options
		n++
	}
	return cat([]byte{next, byte(n/8 - 1)}, body)
}

// rh is a routing header of type typ with segments left segs and addrs.
func rh(next, typ, segs uint8, addrs ...string) []byte {
	body := []byte{typ, segs, 0, 0, 0, 0}
	for _, a := range addrs {
		body = append(body, addr(a)...)
	}
	return ext6(next, body)
}

// frag6 is an IPv6 Fragment header.
func frag6(next uint8, off uint16, more bool, id uint32) []byte {
	fo := off << 3
	if more {
		fo |= 1
	}
	return cat([]byte{next, 0}, u16(fo), u32(id))
}

// ah is an Authentication Header of n bytes (a multiple of 4, at least 8).
func ah(next uint8, n int) []byte {
	b := make([]byte, n)
	b[0], b[1] = next, byte(n/4-2)
	return b
}

// tcp is a TCP header without options, then payload.
func tcp(sport, dport uint16, flags uint8, payload []byte) []byte {
	b := cat(u16(sport), u16(dport), u32(0x01020304), u32(0x05060708))
	b = append(b, 5<<4, flags)
	b = append(b, u16(0xfaf0)...)
	b = append(b, 0, 0, 0, 0)
	return append(b, payload...)
}

// udp is a UDP header with a correct length, then payload.
func udp(sport, dport uint16, payload []byte) []byte {
	return cat(u16(sport), u16(dport), u16(uint16(8+len(payload))), u16(0), payload)
}

func icmp(typ, code uint8, rest []byte) []byte {
	return cat([]byte{typ, code, 0, 0, 0, 1, 0, 1}, rest)
}

func sctp(sport, dport uint16) []byte {
	// Common header, then an empty COOKIE ACK chunk.
	return cat(u16(sport), u16(dport), u32(0xdeadbeef), u32(0), []byte{11, 0, 0, 4})
}

// gre is a GRE header with flags (version in the low bits), protocol and
// the optional fields' bytes, then payload.
func gre(flags, proto uint16, opt []byte, payload []byte) []byte {
	return cat(u16(flags), u16(proto), opt, payload)
}

func vxlanHdr(vni uint32) []byte { return cat([]byte{0x08, 0, 0, 0}, u32(vni<<8)) }

func mplsLabel(label uint32, bottom bool) []byte {
	v := label<<12 | 64
	if bottom {
		v |= 1 << 8
	}
	return u32(v)
}

// pppoe is a PPPoE session header with PPP protocol proto, then payload.
func pppoe(proto uint16, payload []byte) []byte {
	return cat([]byte{0x11, 0}, u16(0x1234), u16(uint16(2+len(payload))), u16(proto), payload)
}

// sll is a Linux cooked v1 header with ARPHRD type hatype and protocol.
func sll(hatype, proto uint16, payload []byte) []byte {
	return cat(u16(0), u16(hatype), u16(6), []byte{2, 0, 0, 0, 0, 1, 0, 0}, u16(proto), payload)
}

// sll2 is a Linux cooked v2 header.
func sll2(hatype, proto uint16, payload []byte) []byte {
	return cat(u16(proto), u16(0), u32(3), u16(hatype), []byte{0, 6}, []byte{2, 0, 0, 0, 0, 1, 0, 0}, payload)
}

// null is a BSD loopback header with family fam in the given byte order.
func null(fam uint32, order binary.AppendByteOrder, payload []byte) []byte {
	return cat(order.AppendUint32(nil, fam), payload)
}

// repeat returns s n times.
func repeat(s []byte, n int) []byte { return bytes.Repeat(s, n) }

// trimLines splits command output into lines without the trailing newline.
func trimLines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
